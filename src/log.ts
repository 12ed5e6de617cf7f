/** The one logging seam: the CLI decides where lines go (stderr, a mount's log file). */
export interface Log {
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export function streamLog(write: (line: string) => void, verbose = true): Log {
  const stamp = () => new Date().toISOString();
  return {
    info: (m) => verbose && write(`${stamp()} info ${m}\n`),
    warn: (m) => write(`${stamp()} warn ${m}\n`),
    error: (m) => write(`${stamp()} error ${m}\n`),
  };
}

export const silentLog: Log = { info: () => {}, warn: () => {}, error: () => {} };
