/**
 * What a download makes of the server's answer to one GET, before reading
 * its body. A pure function of the status line, the headers and what is
 * on disk, so every rule that protects the part file sits in one place.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { retryAfterMs } from './http.js';

/** What the part file holds when the request is sent. */
export interface PartState {
  /** Bytes on disk; a request from a nonzero offset sent a `Range`. */
  offset: number;
  /** The target's length. */
  length: number;
  /** The strong ETag sent in `If-Range`, if any. */
  etag: string | undefined;
}

export type Verdict =
  /** The whole file: empty the part and write the body from byte 0. */
  | { kind: 'whole'; etag: string | undefined; ignoredRange: boolean }
  /** The exact continuation of the part: append the body. */
  | { kind: 'continue' }
  /** The part cannot be continued by this server: empty it, try again. */
  | { kind: 'restart'; problem: string }
  /** No body to take; try again (after `retryAfterMs`) unless permanent. */
  | {
      kind: 'fail';
      problem: string;
      permanent: boolean;
      retryAfterMs?: number;
    };

/** `bytes START-END/TOTAL`, or undefined if it is not that form. */
export function parseContentRange(
  value: string | undefined,
): { start: number; end: number; total: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), end: Number(m[2]), total: Number(m[3]) };
}

/** A strong ETag, the only kind `If-Range` may carry (RFC 9110 13.1.5). */
export function strongEtag(value: string | undefined): string | undefined {
  const tag = value?.trim();
  return tag && /^"[^"]*"$/.test(tag) ? tag : undefined;
}

/** Whether a `Content-Length`, when sent, is `expected`. */
function lengthIs(headers: IncomingHttpHeaders, expected: number): boolean {
  const announced = headers['content-length'];
  return announced === undefined || Number(announced) === expected;
}

function judgePartial(headers: IncomingHttpHeaders, part: PartState): Verdict {
  const { offset, length } = part;
  const range = parseContentRange(headers['content-range']);
  // The rest of the file and nothing else: a range that starts elsewhere
  // or belongs to a file of another size would splice foreign bytes in.
  if (
    !range ||
    range.start !== offset ||
    range.end !== length - 1 ||
    range.total !== length
  ) {
    const sent = headers['content-range'] ?? 'none';
    return {
      kind: 'restart',
      problem: `Content-Range ${sent} for bytes=${offset}- of ${length}`,
    };
  }
  const etag = headers.etag;
  if (etag !== undefined && etag.trim() !== part.etag) {
    return {
      kind: 'restart',
      problem: `the ETag changed from ${part.etag} to ${etag}`,
    };
  }
  if (!lengthIs(headers, length - offset)) {
    return {
      kind: 'restart',
      problem: `Content-Length ${headers['content-length']} for ${length - offset} bytes`,
    };
  }
  return { kind: 'continue' };
}

/** The verdict on an answer with `status` and `headers` to a GET. */
export function judgeAnswer(
  status: number,
  headers: IncomingHttpHeaders,
  part: PartState,
): Verdict {
  if (status === 200) {
    if (!lengthIs(headers, part.length)) {
      return {
        kind: 'fail',
        problem: `the server announces ${headers['content-length']} bytes, the target has ${part.length}`,
        permanent: false,
      };
    }
    return {
      kind: 'whole',
      etag: strongEtag(headers.etag),
      ignoredRange: part.offset > 0,
    };
  }
  if (status === 206) {
    if (part.offset === 0) {
      return {
        kind: 'fail',
        problem: 'a 206 to a request without Range',
        permanent: false,
      };
    }
    return judgePartial(headers, part);
  }
  if (status === 416) {
    return { kind: 'restart', problem: `416 for bytes=${part.offset}-` };
  }
  const wait =
    status === 429 || status === 503
      ? retryAfterMs(headers['retry-after'])
      : undefined;
  const later = wait === undefined ? '' : `, retry after ${wait} ms`;
  return {
    kind: 'fail',
    problem: `the server answered ${status}${later}`,
    // 404, 403, 410 and the like say the same however often asked.
    permanent: !(status === 408 || status === 429 || status >= 500),
    retryAfterMs: wait,
  };
}
