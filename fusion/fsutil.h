/* Small file-system steps shared by everything that writes a model folder
 * (fusion output, finetuning output, the service's job folders). */
#ifndef OTF_FSUTIL_H
#define OTF_FSUTIL_H

#include "common/error.h"

/* Copies src to dst (created or truncated, mode 0644) and fsyncs it. */
otf_status otf_fs_copy_file(const char *src, const char *dst, otf_error *err) OTF_WUR;

/* Writes text and a newline to path and fsyncs it. */
otf_status otf_fs_write_text(const char *path, const char *text, otf_error *err) OTF_WUR;

/* Removes the plain files of dir, then dir itself (a model folder has no
 * subfolders); missing is fine. */
void otf_fs_remove_flat(const char *dir);

/* The start of an atomic model folder: out_dir must not exist or be an
 * empty folder (else OTF_E_INVAL, pointer /output/uri); tmp [2048]
 * receives the sibling folder out_dir.partial.PID, created empty here, to
 * be renamed onto out_dir once complete. */
otf_status otf_fs_partial_dir(const char *out_dir, char *tmp, otf_error *err) OTF_WUR;

/* Copies the side files of a model folder (tokenizer, preprocessor,
 * README, ...) from src_dir into dst_dir: every regular file except dot
 * files, config.json, weights (*.safetensors and their index),
 * fusion_manifest.json (it describes the folder it was written for) and
 * the names in also_skip (NULL-terminated; may be NULL). */
otf_status otf_fs_copy_side_files(const char *src_dir, const char *dst_dir,
                                  const char *const *also_skip, otf_error *err) OTF_WUR;

/* Removes dir and everything below it (links are removed, not followed);
 * missing is fine. For scratch folders of our own making. */
void otf_fs_remove_tree(const char *dir);

/* Creates path and its missing parents (mode 0755). */
otf_status otf_fs_mkdirs(const char *path, otf_error *err) OTF_WUR;

#endif
