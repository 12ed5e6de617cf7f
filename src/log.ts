/** The one logging seam: the CLI decides where lines go (stderr, a mount's log file). */
export interface Log {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** A line streamLog wrote; any other line in a mount's log came from a library or helper (libfuse, fusermount3). */
export const OWN_LOG_LINE = /^\d{4}-\d\d-\d\dT\S+ (info|warn|error) /;

export function streamLog(write: (line: string) => void, verbose = true): Log {
  const stamp = () => new Date().toISOString();
  return {
    info: (m) => verbose && write(`${stamp()} info ${m}\n`),
    warn: (m) => write(`${stamp()} warn ${m}\n`),
    error: (m) => write(`${stamp()} error ${m}\n`),
  };
}

export const silentLog: Log = { info: () => {}, warn: () => {}, error: () => {} };
