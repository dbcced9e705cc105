/**
 * Conditional and range requests for one representation with a strong
 * ETag, as RFC 9110 reads them. Only a single range is served: devices
 * resume with one, and a multi-range answer (multipart/byteranges) is
 * something no TUF client asks for, so such a request gets the whole file,
 * which the RFC allows.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import parseRange from 'range-parser';

export type RangeAnswer =
  | { status: 200 }
  | { status: 206; start: number; end: number }
  | { status: 304 }
  | { status: 416 };

function etagListMatches(header: string, etag: string): boolean {
  // If-None-Match compares weakly: W/"x" matches "x".
  return header
    .split(',')
    .map((t) => t.trim().replace(/^W\//, ''))
    .some((t) => t === '*' || t === etag);
}

/** What to answer a GET or HEAD of a `size`-byte body tagged `etag`. */
export function answerFor(
  req: IncomingMessage,
  size: number,
  etag: string,
): RangeAnswer {
  const ifNoneMatch = req.headers['if-none-match'];
  if (ifNoneMatch && etagListMatches(ifNoneMatch, etag)) return { status: 304 };
  const range = req.headers.range;
  if (!range) return { status: 200 };
  const ifRange = req.headers['if-range'];
  // A strong comparison: a weak tag or a date never matches, so a client
  // resuming against content that may have changed gets it whole.
  if (ifRange !== undefined && String(ifRange).trim() !== etag) {
    return { status: 200 };
  }
  const parsed = parseRange(size, range, { combine: true });
  if (parsed === -1) return { status: 416 };
  if (parsed === -2 || parsed.type !== 'bytes' || parsed.length !== 1) {
    return { status: 200 };
  }
  return { status: 206, start: parsed[0].start, end: parsed[0].end };
}

/**
 * Sets the status and headers for `answer` and says whether a body
 * follows (and which bytes): false for HEAD, 304 and 416.
 */
export function writeHead(
  req: IncomingMessage,
  res: ServerResponse,
  answer: RangeAnswer,
  size: number,
  headers: Record<string, string>,
): { start: number; end: number } | undefined {
  const out: Record<string, string> = { 'Accept-Ranges': 'bytes', ...headers };
  if (answer.status === 304 || answer.status === 416) {
    delete out['Content-Type'];
    if (answer.status === 416) out['Content-Range'] = `bytes */${size}`;
    res.writeHead(answer.status, out).end();
    return undefined;
  }
  const { start, end } =
    answer.status === 206 ? answer : { start: 0, end: size - 1 };
  if (answer.status === 206) {
    out['Content-Range'] = `bytes ${start}-${end}/${size}`;
  }
  out['Content-Length'] = String(Math.max(0, end - start + 1));
  res.writeHead(answer.status, out);
  if (req.method === 'HEAD') {
    res.end();
    return undefined;
  }
  return { start, end };
}
