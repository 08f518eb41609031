import type { GradcheckDependencies } from './gradcheck.js';

/** What a command may use besides its arguments: output, and injectable dependencies for tests. */
export interface CommandContext {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
  /** Transient progress messages (the CLI passes one only when stderr is a terminal). */
  readonly progress?: (message: string) => void;
  /** stderr when it is a terminal (progress bars are drawn there), else absent: progress is plain lines. */
  readonly terminal?: NodeJS.WritableStream | null;
  /** Aborted by the first Ctrl-C: long commands stop at the next step, checkpoint, and say how to resume. */
  readonly signal?: AbortSignal;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
  readonly deps?: Omit<GradcheckDependencies, 'naming' | 'onProgress'>;
}

export interface Command {
  readonly name: string;
  /** One line for the top-level help. */
  readonly summary: string;
  readonly help: () => string;
  /** Returns the exit status. */
  readonly run: (args: readonly string[], context: CommandContext) => Promise<number>;
}
