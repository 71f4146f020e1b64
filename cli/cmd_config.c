/* `mammopatch config` — check an experiment configuration and print what a run
 * would use: the effective values (defaults < --config < --set) as INI, or as JSON, or
 * the list of every key with its type, default and meaning. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "mp_alloc.h"
#include "mp_check.h"
#include "mp_cli.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_params.h"

static void mp_config_help(void) {
  printf("Usage: mammopatch config [--config FILE] [--set KEY=VALUE ...] [--json | --keys]\n\n"
         "Validate the configuration and print the effective values as INI (a file you can\n"
         "edit and pass back with --config).  Unknown keys are warned about; a bad value is\n"
         "refused with a message naming the key, and the exit status is 2.\n\n"
         "  --json             print the effective values as JSON instead\n"
         "  --keys             list every key: type, default, allowed values, meaning\n\n%s",
         mp_common_help);
}

static void mp_config_print_keys(void) {
  static const char *types[] = {"int", "real", "bool", "string", "choice"};
  for (size_t i = 0; i < mp_params_count; i++) {
    const mp_cfg_key *k = &mp_params_schema[i];
    printf("%-28s %-6s default %s", k->key, types[k->type], k->def && *k->def ? k->def : "(empty)");
    if (k->type == MP_CFG_CHOICE) printf("; one of %s", k->choices);
    if ((k->type == MP_CFG_INT || k->type == MP_CFG_REAL) && k->min < k->max)
      printf("; range [%.10g, %.10g]", k->min, k->max);
    printf("\n    %s\n", k->help);
  }
}

int mp_cmd_config(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  int as_json = 0, keys = 0;
  static const struct option opts[] = {
      {"json", no_argument, 0, 'j'}, {"keys", no_argument, 0, 'k'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    if (c == 'j') as_json = 1;
    else if (c == 'k') keys = 1;
    else if (c == 'h') {
      if (mp_launcher_rank() == 0) mp_config_help();
      mp_common_opts_free(&o);
      return MP_EXIT_OK;
    } else {
      mp_common_opts_free(&o);
      return MP_EXIT_USAGE;
    }
  }
  if (optind < argc) {
    return mp_cli_usage(&o, "mammopatch config: unexpected argument '%s' (use --config FILE)\n", argv[optind]);
  }
  if (keys) {
    if (mp_launcher_rank() == 0) mp_config_print_keys();
    mp_common_opts_free(&o);
    return MP_EXIT_OK;
  }
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  if (s.rank == 0) {
    if (as_json) {
      cJSON *doc = mp_json_provenance(s.cfg, s.size);
      char *text = cJSON_Print(doc);
      printf("%s\n", text);
      cJSON_free(text);
      cJSON_Delete(doc);
    } else {
      char *ini = mp_config_to_ini(s.cfg);
      printf("; mammopatch %s (git %s): effective configuration\n%s", mp_version(), mp_version_git(), ini);
      mp_free(ini);
    }
  }
  mp_session_end(&s);
  return MP_EXIT_OK;
}
