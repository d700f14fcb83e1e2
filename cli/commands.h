/* Subcommands of otfuse. Each takes argv with argv[0] = the command name
 * and returns the process exit status: 0 success, 1 failure, 2 usage. */
#ifndef OTF_CLI_COMMANDS_H
#define OTF_CLI_COMMANDS_H

int otf_cli_ot(int argc, char **argv);
int otf_cli_eval(int argc, char **argv);
int otf_cli_inspect(int argc, char **argv);
int otf_cli_fuse(int argc, char **argv);
/* otfuse cp SRC DST: copy a model folder between stores (cli/cmd_cp.c). */
int otf_cli_cp(int argc, char **argv);
int otf_cli_finetune(int argc, char **argv);
/* The otfused client (cli/cmd_client.c): argv[0] is submit, status, wait,
 * jobs, cancel or download. */
int otf_cli_client(int argc, char **argv);

/* Finetuning pieces shared by `otfuse finetune` and `otfuse fuse --finetune-*`
 * (cli/cmd_finetune.c). _set applies one option (key without the leading
 * "--", e.g. "epochs") and returns NULL or the error text; _run finetunes and
 * prints the JSON lines, returning the exit status. */
struct otf_finetune_opts;
const char *otf_cli_finetune_set(struct otf_finetune_opts *o, const char *key,
                                 const char *val);
int otf_cli_finetune_run(const char *model_dir, const char *data, const char *eval,
                         const struct otf_finetune_opts *o, const char *out,
                         const char *extra_provenance, const char *cmd);
/* otfuse fuse --finetune-*: finetunes the fusion in fused_dir into out
 * (the fusion summary goes into the provenance), then removes fused_dir. */
int otf_cli_fuse_finetune(const char *fused_dir, const char *data, const char *eval,
                          const struct otf_finetune_opts *o, const char *out,
                          const char *fuse_summary);

#endif
