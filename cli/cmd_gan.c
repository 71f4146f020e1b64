/* `mammopatch gan train` — one GAN configuration of the SPEC §7 sweep (see
 * gan/mp_gan_train.h); `gan sweep` — the grid over rank groups (gan/mp_gan_sweep.h);
 * `gan sample` — synthetic lesion patches into a store (gan/mp_gan_sample.h). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_gan_sample.h"
#include "mp_gan_sweep.h"
#include "mp_gan_train.h"
#include "mp_signal.h"

static void gan_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch gan train --store patches.h5 --split-seed S --loss L --filters F\n"
         "                          [--sn-ttur] [--extractor TRAIN_DIR] --out DIR [--config F]\n"
         "       [mpiexec -n K] mammopatch gan sweep --store patches.h5 --split-seed S [--extractor TRAIN_DIR]\n"
         "                          --out DIR [--config F]\n"
         "       [mpiexec -n K] mammopatch gan sample --generator DIR --n N --out synthetic.h5\n"
         "                          [--seed S] [--montage-store patches.h5] [--config F]\n\n"
         "Train the SPEC §7 DCGAN on the lesion patches of the split's training part, data-parallel over\n"
         "the K ranks: L in wgan-gp, rsgan, rasgan, ralsgan, rahinge; F the critic's first filters (64,\n"
         "128); --sn-ttur: spectral norm on the critic and TTUR (D 4e-4, G 1e-4, betas (0, 0.9)).  Every\n"
         "gan.fid_every epochs the FID against the real training lesions, with the `inception` extractor\n"
         "when gan.inception_weights names converted weights (tools/convert_inception_weights.py; then also\n"
         "the Inception Score, 10 splits), else the `domain` extractor (the penultimate layer of the\n"
         "classifier in TRAIN_DIR/best, a `train` run of the same store); the lowest-FID generator is kept\n"
         "in DIR/best/, DIR/tsne.csv maps real vs its generated features.  DIR/gan.json: losses, FIDs (N\n"
         "and extractor named, real-vs-real floor), IS, status (completed, or diverged on NaN/Inf).\n"
         "DIR/checkpoint/ every gan.checkpoint_every epochs and on SIGTERM/SIGUSR1 (exit %d): a rerun\n"
         "resumes it bit-identically.\n\n"
         "`gan sweep` runs the grid gan.sweep_losses x gan.sweep_filters x gan.sweep_sn_ttur (SPEC §7: 20\n"
         "runs) over gan.groups rank groups into DIR/runs/, diverged runs recorded, finished ones reused,\n"
         "interrupted ones resumed on a rerun; rank 0 writes DIR/sweep.json, sweep.md / sweep.csv (Table\n"
         "4.4 form: FID / IS) and charts/fid.svg, is.svg (per epoch), tsne.svg (the best run's map).\n\n"
         "`gan sample` draws N synthetic lesion patches from DIR (a gan train run, or a sweep: its best run)\n"
         "into a patch store of the same schema (label 1, one synthetic view record), and with\n"
         "--montage-store writes synthetic.h5.montage.png: real lesion patches above, synthetic below.\n"
         "[gan] keys: mammopatch config --keys.\n\n%s",
         MP_EXIT_INTERRUPTED, mp_common_help);
}

static int gan_sweep(int argc, char **argv);
static int gan_sample(int argc, char **argv);

int mp_cmd_gan(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "sweep") == 0) return gan_sweep(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "sample") == 0) return gan_sample(argc - 1, argv + 1);
  if (argc < 2 || strcmp(argv[1], "train") != 0) {
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
      if (mp_launcher_rank() == 0) gan_help();
      return MP_EXIT_OK;
    }
    if (mp_launcher_rank() == 0 && argc >= 2)
      fprintf(stderr, "mammopatch gan: unknown subcommand '%s': train, sweep or sample (see --help)\n", argv[1]);
    else if (mp_launcher_rank() == 0)
      fprintf(stderr, "mammopatch gan: a subcommand is required: train, sweep or sample (see --help)\n");
    return MP_EXIT_USAGE;
  }
  argc--, argv++;
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_gan_train_args a = {.filters = 64, .loss = MP_GAN_WGAN_GP};
  const char *seed = NULL, *loss = NULL, *filters = NULL;
  static const struct option opts[] = {{"store", required_argument, 0, 's'},   {"split-seed", required_argument, 0, 'S'},
                                       {"loss", required_argument, 0, 'l'},    {"filters", required_argument, 0, 'f'},
                                       {"sn-ttur", no_argument, 0, 'n'},       {"extractor", required_argument, 0, 'e'},
                                       {"out", required_argument, 0, 'o'},     {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': a.store_path = optarg; break;
    case 'S': seed = optarg; break;
    case 'l': loss = optarg; break;
    case 'f': filters = optarg; break;
    case 'n': a.sn_ttur = true; break;
    case 'e': a.extractor_dir = optarg; break;
    case 'o': a.out_dir = optarg; break;
    case 'h': return mp_cli_help(&o, gan_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  bool seed_ok = mp_cli_seed(seed, &a.split_seed);
  if (!a.store_path || !a.out_dir || !seed_ok || !loss || optind < argc) {
    return mp_cli_usage(&o,
                        "mammopatch gan train: --store, --split-seed, --loss and --out are required (see --help)\n");
  }
  if (filters && (!mp_cli_int(filters, 8, 1024, &a.filters) || a.filters % 8)) {
    return mp_cli_usage(&o, "mammopatch gan train: --filters '%s' is not a multiple of 8 from 8 to 1024\n", filters);
  }
  if (mp_gan_loss_parse(loss, &a.loss) != 0) {
    return mp_cli_usage(&o,
                        "mammopatch gan train: unknown loss '%s' (wgan-gp, rsgan, rasgan, ralsgan, rahinge)\n", loss);
  }
  mp_session s;
  mp_signal_catch_stop(); /* before MPI starts: a signal then is a stop, not a kill */
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_gan_train_run(s.comm, s.cfg, &a, NULL);
  mp_session_end(&s);
  return status;
}

static int gan_sweep(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_gan_sweep_args a = {0};
  const char *seed = NULL;
  static const struct option opts[] = {{"store", required_argument, 0, 's'},     {"split-seed", required_argument, 0, 'S'},
                                       {"extractor", required_argument, 0, 'e'}, {"out", required_argument, 0, 'o'},
                                       {"help", no_argument, 0, 'h'},            {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 's': a.store_path = optarg; break;
    case 'S': seed = optarg; break;
    case 'e': a.extractor_dir = optarg; break;
    case 'o': a.out_dir = optarg; break;
    case 'h': return mp_cli_help(&o, gan_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  bool seed_ok = mp_cli_seed(seed, &a.split_seed);
  if (!a.store_path || !a.out_dir || !seed_ok || optind < argc) {
    return mp_cli_usage(&o,
                        "mammopatch gan sweep: --store, --split-seed and --out are required (see --help)\n");
  }
  mp_session s;
  mp_signal_catch_stop();
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_gan_sweep_run(s.comm, s.cfg, &a);
  mp_session_end(&s);
  return status;
}

static int gan_sample(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  mp_gan_sample_args a = {.seed = 1};
  const char *n = NULL;
  bool seed_ok = true;
  static const struct option opts[] = {{"generator", required_argument, 0, 'g'}, {"n", required_argument, 0, 'n'},
                                       {"out", required_argument, 0, 'o'},       {"seed", required_argument, 0, 'S'},
                                       {"montage-store", required_argument, 0, 'm'}, {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    switch (c) {
    case 'g': a.generator_dir = optarg; break;
    case 'n': n = optarg; break;
    case 'o': a.out_path = optarg; break;
    case 'S': seed_ok = mp_cli_seed(optarg, &a.seed); break;
    case 'm': a.montage_store = optarg; break;
    case 'h': return mp_cli_help(&o, gan_help);
    default: return mp_cli_usage(&o, NULL);
    }
  }
  if (!a.generator_dir || !a.out_path || !mp_cli_uint(n, 1, UINT32_MAX, &a.n) || !seed_ok || optind < argc) {
    return mp_cli_usage(&o, "mammopatch gan sample: --generator, --n (a whole number from 1 to 2^32 - 1) and --out "
                            "are required, --seed a non-negative integer up to 2^53 (see --help)\n");
  }
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_gan_sample_run(s.comm, s.cfg, &a);
  mp_session_end(&s);
  return status;
}
