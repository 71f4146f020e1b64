/* `mammopatch smote features` — SMOTE phase 2 (see smote/mp_smote.h).  Phase 3 (the
 * frozen-block-1 training) and the smote-* variants arrive with the rest of the stage. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_smote.h"

static void smote_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch smote features --store patches.h5 --split-seed S --baseline TRAIN_DIR\n"
         "                          --dist cosine|l1|l2 [--k 2] --out smote.h5 [--config F]\n\n"
         "Deep-learning SMOTE, phase 2 (SPEC §9): every lesion patch of the split's training part through\n"
         "block 1 of TRAIN_DIR/best (the baseline of the same store and split; 16x64x64 features), its k\n"
         "nearest other training lesion patches under the distance (exact; ties by index; rows over the\n"
         "ranks), and for each neighbour one synthetic vector f_i + p (f_nb - f_i), p ~ U(0,1) from the\n"
         "counter-based RNG.  smote.h5: /synthetic/features [k n, 16, 64, 64] with base, neighbour, p and\n"
         "distance, /real/index (the base patches' store indices).\n\n%s",
         mp_common_help);
}

int mp_cmd_smote(int argc, char **argv) {
  if (argc < 2 || strcmp(argv[1], "features") != 0) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
      if (mp_launcher_rank() == 0) smote_help();
      return MP_EXIT_OK;
    }
    if (mp_launcher_rank() == 0 && argc >= 2)
      fprintf(stderr, "mammopatch smote: unknown subcommand '%s': features (see --help)\n", argv[1]);
    else if (mp_launcher_rank() == 0)
      fprintf(stderr, "mammopatch smote: a subcommand is required: features (see --help)\n");
    return MP_EXIT_USAGE;
  }
  argc--, argv++;
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_smote_args a = {.k = 2, .dist = MP_DIST_COSINE};
  const char *seed = NULL, *dist = NULL, *k = NULL;
  static const struct option opts[] = {{"store", required_argument, 0, 's'},    {"split-seed", required_argument, 0, 'S'},
                                       {"baseline", required_argument, 0, 'b'}, {"dist", required_argument, 0, 'd'},
                                       {"k", required_argument, 0, 'k'},        {"out", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': a.store_path = optarg; break;
    case 'S': seed = optarg; break;
    case 'b': a.baseline_dir = optarg; break;
    case 'd': dist = optarg; break;
    case 'k': k = optarg; break;
    case 'o': a.out_path = optarg; break;
    case 'h': return mp_cli_help(&o, smote_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  bool seed_ok = mp_cli_seed(seed, &a.split_seed);
  if (!a.store_path || !a.baseline_dir || !a.out_path || !dist || !seed_ok || optind < argc ||
      mp_dist_parse(dist, &a.dist) != 0) {
    return mp_cli_usage(&o,
                        "mammopatch smote features: --store, --split-seed, --baseline, --dist cosine|l1|l2 and --out "
                        "are required (see --help)\n");
  }
  if (k && !mp_cli_int(k, 1, 50, &a.k))
    return mp_cli_usage(&o, "mammopatch smote features: --k '%s' is not a whole number from 1 to 50\n", k);
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_smote_features_run(s.comm, s.cfg, &a);
  mp_session_end(&s);
  return status;
}
