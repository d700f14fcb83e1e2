/* otfuse: the command-line tool. Dispatches to one subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

#define OTFUSE_VERSION "0.1.0"

static void usage(FILE *f) {
  fprintf(f,
          "usage: otfuse <command> [options]\n"
          "\n"
          "commands:\n"
          "  ot       solve one optimal-transport problem from a safetensors file\n"
          "  fuse     fuse two or more models with optimal transport\n"
          "  cp       copy a model folder between stores (paths, file://, s3://, http(s)://)\n"
          "  inspect  describe a model folder or a safetensors file\n"
          "  eval     accuracy and loss of a model on a labelled data file\n"
          "  finetune train a model (e.g. a fused one) briefly on labelled data\n"
          "  submit   submit a fusion job to otfused (a spec file, or fuse options)\n"
          "  status   show a job of otfused\n"
          "  wait     follow a job until it ends (exit 0 succeeded, 1 failed, 3 cancelled)\n"
          "  jobs     list otfused's jobs\n"
          "  cancel   cancel a job\n"
          "  download download a finished job's artifacts, checked against their SHA-256\n"
          "  version  print the version\n"
          "\n"
          "Run 'otfuse <command> --help' for a command's options.\n");
}

int main(int argc, char **argv) {
  if(argc < 2) {
    usage(stderr);
    return 2;
  }
  const char *cmd = argv[1];
  if(!strcmp(cmd, "eval"))
    return otf_cli_eval(argc - 1, argv + 1);
  if(!strcmp(cmd, "ot"))
    return otf_cli_ot(argc - 1, argv + 1);
  if(!strcmp(cmd, "fuse"))
    return otf_cli_fuse(argc - 1, argv + 1);
  if(!strcmp(cmd, "cp"))
    return otf_cli_cp(argc - 1, argv + 1);
  if(!strcmp(cmd, "finetune"))
    return otf_cli_finetune(argc - 1, argv + 1);
  if(!strcmp(cmd, "inspect"))
    return otf_cli_inspect(argc - 1, argv + 1);
  if(!strcmp(cmd, "submit") || !strcmp(cmd, "status") || !strcmp(cmd, "wait") ||
     !strcmp(cmd, "jobs") || !strcmp(cmd, "cancel") || !strcmp(cmd, "download"))
    return otf_cli_client(argc - 1, argv + 1);
  if(!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("otfuse %s\n", OTFUSE_VERSION);
    return 0;
  }
  if(!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
    usage(stdout);
    return 0;
  }
  fprintf(stderr, "otfuse: unknown command '%s'\n", cmd);
  usage(stderr);
  return 2;
}
