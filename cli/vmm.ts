#!/usr/bin/env node
/**
 * The `vmm` executable (package.json `bin`, compiled to dist/cli/vmm.js).
 *
 *   vmm [options]            same as `vmm run [options]`
 *   vmm run [options]        boot a VM (cli/commands/run.ts)
 *   vmm ctl [options] CMD    drive a running VM through its control socket (cli/commands/ctl.ts)
 *   vmm wl-proxy [options]   hand Wayland clients to a compositor inside a VM (cli/commands/wl-proxy.ts)
 *   vmm help [PLUGIN]        this help, or a plugin's options from its schema (cli/commands/help.ts)
 *
 * Each subcommand lives in its own module under cli/commands/, exports `add<Name>Command(program,
 * verbose)`, and is added in createProgram().
 *
 * Exit codes are listed in cli/exit-codes.ts. commander's usage errors (unknown flag, bad
 * choice, unexpected argument) exit 2 through exitOverride(); --help and --version exit 0.
 * The process exits with process.exit(code) as soon as the command has finished, not when the
 * event loop empties: Node's teardown of an empty loop puts the default signal actions back
 * before the process is gone, and a SIGTERM in that window (`timeout` sends two) would kill vmm
 * by the signal instead of exiting with the documented code. Nothing is lost by it: on Linux,
 * writes to stdout and stderr are synchronous for files, pipes and terminals alike.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Command, CommanderError } from 'commander';
import createDebug from 'debug';
import { addCtlCommand } from './commands/ctl';
import { addHelpCommand } from './commands/help';
import { addRunCommand } from './commands/run';
import { addWlProxyCommand } from './commands/wl-proxy';
import { EXIT_ERROR, EXIT_OK, EXIT_USAGE, reportError } from './exit-codes';

/** `-v`/`--verbose` anywhere before `--`; checked before parsing so parsing itself can log. */
export function wantsVerbose(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '-v' || a === '--verbose');
}

/** Turn on every vmm logger, keeping whatever DEBUG already enabled. debug.enable() also sets
 * process.env.DEBUG, so vCPU worker threads started later inherit it. */
export function enableVerbose(): void {
  createDebug.enable([process.env.DEBUG, 'vmm:*'].filter(Boolean).join(','));
}

function packageVersion(): string {
  // dist/cli/vmm.js → the package root; read at run time so the version is never stale.
  const file = path.join(__dirname, '..', '..', 'package.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { version: string }).version;
}

export function createProgram(): Command {
  const program = new Command('vmm')
    .description('A KVM virtual machine monitor whose devices are plugins.')
    .version(packageVersion(), '-V, --version', 'print the vmm version')
    .option('-v, --verbose', 'log everything vmm does to stderr (debug namespaces vmm:*), and show stack traces')
    .helpOption('-h, --help', 'show this help')
    .helpCommand(false)
    // Settings below are copied to subcommands added after them.
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`vmm: ${text.replace(/^error: /, '')}`) })
    .showHelpAfterError("(see 'vmm --help')")
    .configureHelp({ showGlobalOptions: true });

  const verbose = () => Boolean(program.opts().verbose);
  const run = addRunCommand(program, verbose);
  addCtlCommand(program, verbose);
  addWlProxyCommand(program, verbose);
  addHelpCommand(program, verbose);

  // `vmm --help` shows the run options too: most people only ever use the default command.
  program.addHelpText('after', () => {
    const help = run.createHelp();
    help.prepareContext({ helpWidth: process.stdout.columns || 80 });
    const options = help.visibleOptions(run).filter((o) => o.long !== '--help');
    const width = Math.max(...options.map((o) => help.optionTerm(o).length));
    const items = options.map((o) => help.formatItem(help.optionTerm(o), width, help.optionDescription(o), help));
    return `\nRun options (vmm [options] is vmm run [options]):\n${items.join('\n')}\n`;
  });
  return program;
}

/** Parse and run; resolves with the exit code. */
export async function main(argv: readonly string[] = process.argv): Promise<number> {
  const verbose = wantsVerbose(argv.slice(2));
  if (verbose) enableVerbose();
  try {
    await createProgram().parseAsync([...argv]);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed the message (or the help / version).
      return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    }
    reportError(err, verbose);
    return EXIT_ERROR;
  }
}

if (require.main === module) {
  let finished = false;
  // If the event loop empties while a command is still pending (nothing left to wait on), Node
  // would exit 0 as if the guest had powered off; make that an error instead. Only a 0 is
  // suspect: a deliberate process.exit(code) (a second SIGTERM exits 143 at once) keeps its code.
  process.once('exit', (code) => {
    if (finished || code !== EXIT_OK) return;
    process.stderr.write('vmm: internal error: vmm ended before the command finished\n');
    process.exitCode = EXIT_ERROR;
  });
  void main().then((code) => {
    finished = true;
    process.exit(code);
  });
}
