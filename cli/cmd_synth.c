/* `mammopatch synth` — write the synthetic cohort (see synth/mp_synth.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "mp_check.h"
#include "mp_cli.h"
#include "mp_dicom.h"
#include "mp_json.h"
#include "mp_log.h"
#include "mp_synth.h"

static void mp_synth_help(void) {
  printf("Usage: [mpiexec -n K] mammopatch synth --out DIR [--patients N] [--seed S]\n"
         "                      [--width W --height H] [--preview] [--config F]\n\n"
         "Write a synthetic mammography cohort: DICOM MG files (GDCM; explicit VR little endian,\n"
         "JPEG-LS and JPEG 2000 lossless; MONOCHROME1/2), labels.csv, and the truth the\n"
         "preprocessing is held to (truth.csv per file, truth_lesions.csv per lesion).\n"
         "Patients are split over the ranks; the cohort is identical for any K.\n\n"
         "  --out DIR          output directory (created)\n"
         "  --patients N       number of patients (synth.patients)\n"
         "  --seed S           master seed (run.seed)\n"
         "  --width W          image columns (synth.width; full field 3328)\n"
         "  --height H         image rows (synth.height; full field 4096)\n"
         "  --preview          also write DIR/preview.png, a montage of a few views\n\n"
         "Decoy shares, the BI-RADS mix and encodings are [synth] keys: mammopatch config --keys\n\n%s",
         mp_common_help);
}

int mp_cmd_synth(int argc, char **argv) {
  mp_common_opts o;
  int rc = mp_cli_take_common(&argc, argv, &o);
  if (rc) return rc;
  const char *out = NULL;
  bool preview = false;
  /* options that are configuration keys become --set overrides */
  const char *sets[4];
  char bufs[4][64];
  int nsets = 0;
  static const struct option opts[] = {{"out", required_argument, 0, 'o'},      {"patients", required_argument, 0, 'n'},
                                       {"seed", required_argument, 0, 's'},     {"width", required_argument, 0, 'w'},
                                       {"height", required_argument, 0, 'H'},   {"preview", no_argument, 0, 'p'},
                                       {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
    const char *key = NULL;
    switch (c) {
    case 'o': out = optarg; break;
    case 'p': preview = true; break;
    case 'n': key = "synth.patients"; break;
    case 's': key = "run.seed"; break;
    case 'w': key = "synth.width"; break;
    case 'H': key = "synth.height"; break;
    case 'h': return mp_cli_help(&o, mp_synth_help);
    default: return mp_cli_usage(&o, NULL);
    }
    if (key && nsets < 4) {
      snprintf(bufs[nsets], sizeof bufs[nsets], "%s=%s", key, optarg);
      sets[nsets] = bufs[nsets];
      nsets++;
    }
  }
  if (!out || optind < argc) {
    return mp_cli_usage(&o,
                        "mammopatch synth: %s (see --help)\n", out ? "unexpected argument" : "--out DIR is required");
  }
  mp_cli_add_sets(&o, sets, nsets); /* command-line values win over --config and --set */
  mp_session s;
  rc = mp_session_start(&s, &argc, &argv, &o);
  mp_common_opts_free(&o);
  if (rc) return rc;
  int status = mp_cli_synth(&s, out, preview);
  mp_session_end(&s);
  return status;
}

int mp_cli_synth(mp_session *sp, const char *out, bool preview) {
  mp_session s = *sp;
  mp_synth_params p;
  mp_synth_params_from_config(&p, s.cfg);
  MP_INFO("synth: %d patients, %dx%d, seed %llu, %d rank%s -> %s (%s)", p.patients, p.width, p.height,
          (unsigned long long)p.seed, s.size, s.size == 1 ? "" : "s", out, mp_dicom_library_version());
  mp_synth_stats st;
  int status = mp_synth_run(s.comm, &p, out, preview, &st) ? MP_EXIT_FAILURE : MP_EXIT_OK;
  if (status == MP_EXIT_OK) {
    double ips = st.seconds > 0 ? (double)st.images / st.seconds : 0;
    MP_INFO("synth: %llu files (%llu images, %.1f MiB) in %.1f s: %.2f images/s on %d ranks; expected outcomes: "
            "%llu accepted, %llu discarded, %llu failed",
            (unsigned long long)st.files, (unsigned long long)st.images, (double)st.bytes / 1048576.0, st.seconds, ips,
            s.size, (unsigned long long)st.by_outcome_accepted, (unsigned long long)st.by_outcome_discarded,
            (unsigned long long)st.by_outcome_failed);
    if (s.rank == 0) {
      cJSON *doc = cJSON_CreateObject();
      cJSON_AddItemToObject(doc, "provenance", mp_json_provenance(s.cfg, s.size));
      cJSON_AddStringToObject(doc, "dicom_library", mp_dicom_library_version());
      cJSON *t = cJSON_AddObjectToObject(doc, "stats");
      cJSON_AddNumberToObject(t, "patients", p.patients);
      cJSON_AddNumberToObject(t, "files", (double)st.files);
      cJSON_AddNumberToObject(t, "images", (double)st.images);
      cJSON_AddNumberToObject(t, "bytes", (double)st.bytes);
      cJSON_AddNumberToObject(t, "seconds", st.seconds);
      cJSON_AddNumberToObject(t, "images_per_second", ips);
      cJSON_AddNumberToObject(t, "render_seconds_sum", st.render_seconds);
      cJSON_AddNumberToObject(t, "write_seconds_sum", st.write_seconds);
      cJSON *e = cJSON_AddObjectToObject(doc, "expected_outcomes");
      cJSON_AddNumberToObject(e, "accepted", (double)st.by_outcome_accepted);
      cJSON_AddNumberToObject(e, "discarded", (double)st.by_outcome_discarded);
      cJSON_AddNumberToObject(e, "failed", (double)st.by_outcome_failed);
      char path[4096], err[512];
      snprintf(path, sizeof path, "%s/synth.json", out);
      if (mp_json_write_file(path, doc, err, sizeof err)) {
        MP_ERROR("%s", err);
        status = MP_EXIT_FAILURE;
      }
      cJSON_Delete(doc);
    }
    MP_CHECK_MPI(MPI_Bcast(&status, 1, MPI_INT, 0, s.comm));
  }
  mp_mpi_report_memory(s.comm, "synth");
  return status;
}
