/**
 * A file that never answers, for deadline tests: a FIFO. open(2) of it for reading blocks in the kernel until a
 * writer comes, as a read of a file on an NFS server that stopped answering does; a real hang, not a mock.
 */
import { execFile } from 'node:child_process';
import { closeSync, constants, openSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export interface HungFile {
  path: string;
  /** Lets every blocked reader go (they read end of file) and removes the FIFO. */
  release(): Promise<void>;
}

export async function hungFile(path: string): Promise<HungFile> {
  await exec('mkfifo', [path]);
  return {
    path,
    async release() {
      // A writer's open releases every reader blocked in open(2) at once (they then read end of file). Opened
      // without blocking it fails (ENXIO) until a reader waits: a read may still be on its way, so try for 5 s.
      for (let tries = 0; tries < 250; tries++) {
        try {
          closeSync(openSync(path, constants.O_WRONLY | constants.O_NONBLOCK));
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENXIO') throw err;
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      }
      await rm(path, { force: true }); // later readers find nothing rather than block again
    },
  };
}
