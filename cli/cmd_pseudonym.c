/* `mammopatch pseudonym` — the site's look-up from PatientID to the pseudonym that
 * appears in every output.  Runs on one process (no MPI needed).  IDs come from the
 * command line or, with `-`, one per line from standard input; pseudonyms are printed
 * one per line in the same order (the IDs are not echoed, so the output holds no
 * identifier). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_config.h"
#include "mp_params.h"
#include "mp_pseudonym.h"

static void mp_pseudonym_help(void) {
  printf("Usage: mammopatch pseudonym [--site-key-file FILE] [--config F] ID [ID ...]\n"
         "       mammopatch pseudonym [--site-key-file FILE] -      (IDs from stdin, one per line)\n"
         "       mammopatch pseudonym --file PATH ...                 (input files: F..., as preprocess and\n"
         "                                                             predict name them with privacy.file_names =\n"
         "                                                             pseudonym: preprocess's path relative to\n"
         "                                                             --input, predict's path as given)\n\n"
         "Print the keyed pseudonym (HMAC-SHA256 with the site key) of each PatientID, one per\n"
         "line, in order.  The key comes from --site-key-file, else privacy.site_key_file of\n"
         "the configuration, else $%s.  The key's fingerprint goes to stderr.\n\n%s",
         MP_SITE_KEY_ENV, mp_common_help);
}

static void mp_emit(const mp_site_key *k, const char *id, bool file) {
  char p[MP_PSEUDONYM_LEN + 1];
  if (file)
    mp_pseudonym_file(k, id, p);
  else
    mp_pseudonym(k, id, p);
  printf("%s\n", p);
}

int mp_cmd_pseudonym(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  const char *keyfile = NULL;
  bool file = false; /* --file: the arguments are input paths (privacy.file_names = pseudonym) */
  static const struct option opts[] = {
      {"site-key-file", required_argument, 0, 'k'}, {"file", no_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'k') keyfile = optarg;
    else if (c == 'f') file = true;
    else {
      mp_common_opts_free(&o);
      if (c == 'h') mp_pseudonym_help();
      return c == 'h' ? MP_EXIT_OK : MP_EXIT_USAGE;
    }
  }
  if (optind >= argc) {
    fprintf(stderr, "mammopatch pseudonym: no patient ID given (see --help)\n");
    mp_common_opts_free(&o);
    return MP_EXIT_USAGE;
  }
  char err[512];
  /* the configuration may name the key file */
  mp_config *cfg = mp_params_new();
  int bad = o.config_file && mp_config_load_file(cfg, o.config_file, err, sizeof err);
  for (int i = 0; !bad && i < o.nsets; i++) bad = mp_config_set_arg(cfg, o.sets[i], err, sizeof err);
  mp_common_opts_free(&o);
  if (bad) {
    fprintf(stderr, "mammopatch pseudonym: %s\n", err);
    mp_config_free(cfg);
    return MP_EXIT_USAGE;
  }
  if (!keyfile || !*keyfile) keyfile = mp_config_str(cfg, "privacy.site_key_file");
  mp_site_key key;
  rc = mp_site_key_load(&key, keyfile, err, sizeof err);
  mp_config_free(cfg);
  if (rc) {
    fprintf(stderr, "mammopatch pseudonym: %s\n", err);
    return MP_EXIT_USAGE;
  }
  fprintf(stderr, "site key fingerprint %s\n", key.fingerprint);
  for (int i = optind; i < argc; i++) {
    if (strcmp(argv[i], "-") == 0) {
      char line[4096];
      while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (*line) mp_emit(&key, line, file);
      }
    } else {
      mp_emit(&key, argv[i], file);
    }
  }
  mp_site_key_clear(&key);
  return MP_EXIT_OK;
}
