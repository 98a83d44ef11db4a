/**
 * `vmm help [PLUGIN]`: vmm's own help, or the options a plugin declares in its schema (listed by
 * core/plugins/help.ts). PLUGIN is named as for --plugin: a first-party name, a file or an npm
 * package, resolved from the working directory. A plugin that cannot be found or loaded exits 2.
 */
import type { Command } from 'commander';
import { formatPluginHelp } from '../../core/plugins/help';
import { loadPluginModule } from '../../core/plugins/loader';
import { EXIT_USAGE, reportError } from '../exit-codes';

export function addHelpCommand(program: Command, verbose: () => boolean): Command {
  return program
    .command('help [plugin]')
    .description("show this help, or a plugin's options (a first-party name, a file or an npm package)")
    .action((name: string | undefined) => {
      if (name === undefined) {
        program.outputHelp();
        return;
      }
      try {
        process.stdout.write(formatPluginHelp(loadPluginModule(name, process.cwd())));
      } catch (err) {
        reportError(err, verbose());
        process.exitCode = EXIT_USAGE;
      }
    });
}
