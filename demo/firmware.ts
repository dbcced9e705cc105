/**
 * Firmware images for the demo: real ext4 root filesystems made with
 * `mkfs.ext4 -d` from a small tree, and read back with `debugfs` and
 * `e2fsck` the way a device's health check and its boot would see them.
 * Nothing here needs root: the images are files.
 */
import { execFile } from 'node:child_process';
import { access, constants, mkdir, writeFile } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The e2fsprogs programs the demo drives, by absolute path. */
export interface Ext4Tools {
  mkfs: string;
  debugfs: string;
  e2fsck: string;
}

/**
 * Finds a program on PATH or in the sbin folders, which a user's PATH
 * often lacks on Debian although the e2fsprogs tools live there.
 */
async function findProgram(name: string): Promise<string | undefined> {
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter),
    '/usr/sbin',
    '/sbin',
  ];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      // A relative PATH entry would mean another file from another folder.
      return resolve(candidate);
    } catch {
      // not here
    }
  }
  return undefined;
}

export async function findExt4Tools(): Promise<Ext4Tools> {
  const [mkfs, debugfs, e2fsck] = await Promise.all(
    ['mkfs.ext4', 'debugfs', 'e2fsck'].map(findProgram),
  );
  const missing = [
    mkfs ? '' : 'mkfs.ext4',
    debugfs ? '' : 'debugfs',
    e2fsck ? '' : 'e2fsck',
  ].filter((m) => m !== '');
  if (!mkfs || !debugfs || !e2fsck) {
    throw new Error(
      `${missing.join(', ')} not found on PATH, /usr/sbin or /sbin: ` +
        'install e2fsprogs (apt-get install e2fsprogs)',
    );
  }
  return { mkfs, debugfs, e2fsck };
}

export interface FirmwareSpec {
  version: string;
  /** False builds an image that is signed like any other but fails its health check. */
  healthy: boolean;
}

/** Size of every demo image; a slot is larger. */
export const IMAGE_MIB = 16;

/** The path of the health marker inside an image. */
export const HEALTH_MARKER = '/etc/tufota/health';

/**
 * Builds `dir/rootfs-VERSION.ext4`: `/etc/os-release` carrying the
 * version, an application, and the health marker (left out of a broken
 * image, as a release that forgot to start its service would lack it).
 */
export async function buildFirmware(
  tools: Ext4Tools,
  dir: string,
  spec: FirmwareSpec,
): Promise<string> {
  const tree = join(dir, `tree-${spec.version}`);
  await mkdir(join(tree, 'etc', 'tufota'), { recursive: true });
  await mkdir(join(tree, 'opt', 'demo-app'), { recursive: true });
  await writeFile(
    join(tree, 'etc', 'os-release'),
    [
      'NAME="tufota demo OS"',
      'ID=tufota-demo',
      `VERSION_ID="${spec.version}"`,
      `PRETTY_NAME="tufota demo OS ${spec.version}"`,
      '',
    ].join('\n'),
  );
  await writeFile(
    join(tree, 'opt', 'demo-app', 'app.sh'),
    `#!/bin/sh\necho "demo application of release ${spec.version}"\n`,
    { mode: 0o755 },
  );
  if (spec.healthy) await writeFile(join(tree, HEALTH_MARKER), 'ok\n');
  const image = join(dir, `rootfs-${spec.version}.ext4`);
  await run(tools.mkfs, [
    '-q',
    '-F',
    '-t',
    'ext4',
    '-L',
    'tufota-root',
    '-d',
    tree,
    image,
    `${IMAGE_MIB}M`,
  ]);
  return image;
}

/**
 * A file's text from inside an ext4 image, or undefined when it is not
 * there. debugfs answers a missing file with exit 0 and a message on
 * standard error, so the message is what tells.
 */
export async function readFromImage(
  tools: Ext4Tools,
  image: string,
  path: string,
): Promise<string | undefined> {
  const { stdout, stderr } = await run(tools.debugfs, [
    '-R',
    `cat ${path}`,
    image,
  ]);
  if (/not found|Bad magic|Couldn't find valid filesystem/i.test(stderr)) {
    return undefined;
  }
  return stdout;
}

/**
 * The health check a demo device runs after a trial boot, as a shell
 * script an integrator would write: the booted slot's filesystem must be
 * clean (e2fsck -n) and carry the health marker (read with debugfs). Every
 * path comes in as an argument, never pasted into the script, so no
 * folder name can change what it runs.
 */
export const HEALTH_CHECK_SCRIPT = `#!/bin/sh
# Health check of the demo device, run by tufota-device after-boot once a
# trial boot is up. Exit 0 only if the slot that booted is a clean ext4
# filesystem and carries ${HEALTH_MARKER}.
# Arguments: CMDLINE SLOT_A SLOT_B E2FSCK DEBUGFS
set -u
cmdline=$1 slot_a=$2 slot_b=$3 e2fsck=$4 debugfs=$5
slot=
for word in $(cat "$cmdline"); do
  case "$word" in
    tufota.slot=a) slot=a; break ;;
    tufota.slot=b) slot=b; break ;;
  esac
done
case "$slot" in
  a) image=$slot_a ;;
  b) image=$slot_b ;;
  *) echo "no tufota.slot= in $cmdline" >&2; exit 1 ;;
esac
for tool in "$e2fsck" "$debugfs"; do
  if [ ! -x "$tool" ]; then
    echo "cannot run $tool: the check itself is broken" >&2
    exit 1
  fi
done
"$e2fsck" -n -f "$image" >/dev/null 2>&1
case $? in
  0) ;;
  8|16|126|127) echo "slot $slot: e2fsck could not run" >&2; exit 1 ;;
  *) echo "slot $slot: e2fsck -n found a damaged filesystem" >&2; exit 1 ;;
esac
marker=$("$debugfs" -R 'cat ${HEALTH_MARKER}' "$image" 2>/dev/null)
if [ "$marker" != ok ]; then
  echo "slot $slot: ${HEALTH_MARKER} is missing; the release is not healthy" >&2
  exit 1
fi
echo "slot $slot: filesystem clean, health marker present"
`;
