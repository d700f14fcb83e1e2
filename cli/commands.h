/* Subcommands of otfuse. Each takes argv with argv[0] = the command name
 * and returns the process exit status: 0 success, 1 failure, 2 usage. */
#ifndef OTF_CLI_COMMANDS_H
#define OTF_CLI_COMMANDS_H

int otf_cli_ot(int argc, char **argv);
int otf_cli_eval(int argc, char **argv);
int otf_cli_inspect(int argc, char **argv);
int otf_cli_fuse(int argc, char **argv);

#endif
