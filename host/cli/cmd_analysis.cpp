// vae_gpu's analysis commands `recommend`, `similar`, `embed` and `cluster` (each trains first, or
// loads --model-file), and the K-Means / t-SNE report the main job shares with `cluster`.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <iterator>
#include <limits>
#include <new>
#include <sstream>

#include "analysis/analysis_ops.h"
#include "analysis/cluster_metrics.h"
#include "analysis/kmeans.h"
#include "analysis/npy.h"
#include "analysis/profile.h"
#include "analysis/recommend.h"
#include "analysis/similar.h"
#include "analysis/svg_plot.h"
#include "analysis/tsne.h"
#include "analysis/tsne_bh.h"
#include "cli/options.h"
#include "core/temp_files.h"
#include "data/text_reader.h"

namespace vae::cli {

namespace {

// Analysis commands read models with room for this many rows per batch.
constexpr int64_t kAnalysisBatch = 256;

// A model to analyse: loaded from --model-file, or trained now with the usual flags (training
// lines go to stderr so stdout holds only the analysis).
LoadedModel obtain_model(Options& o, Backend<float>& be, const Dataset& d) {
  if (!o.model_file.empty()) return load_model(o, be, d, kAnalysisBatch);
  if (o.train.data_dir.empty()) o.train.data_dir = d.source;
  o.train.require_eval = false;  // the model is what is wanted here, not its figures
  TrainResult r = run_experiment(be, d, o.train, std::cerr);
  // Refit now: say which fit answers (its lambda, how it was chosen).
  if (r.model == "ease") std::cerr << "ease on the " << r.protocol << " protocol's training users: " << r.note << "\n";
  LoadedModel lm;
  lm.info = model_file_info(r, d);
  lm.model = std::move(r.model_ptr);
  return lm;
}

std::unique_ptr<SvdModel> train_svd(Options& o, const Dataset& d, std::ostream& log) {
  if (o.train.folds >= 2) throw UsageError("--folds trains one model per fold: drop it to analyse one model");
  const SvdRunConfig rc = svd_run_config(o);
  print_svd_device(rc, o.train.model.kind == "svdpp");
  o.train.require_eval = false;  // the model is what is wanted here, not its figures
  return run_svd_experiment(d, o.train, rc, log).model;
}

// The kind of model an analysis command will use, known before any data is read or model trained:
// the file's (peeked; "" when unreadable, which loading then reports), else --model (default vae).
std::string analysis_kind(const Options& o) {
  if (!o.model_file.empty()) return peek_model_kind(o.model_file);
  return o.train.model.kind.empty() ? "vae" : o.train.model.kind;
}

// embed and cluster need user codes: a VAE's latent means or an SVD model's user vectors
// (refused here, before training, rather than after it).
void require_user_codes(const std::string& kind, bool posterior) {
  if (kind.empty()) return;
  if (is_svd_kind(kind)) {
    if (posterior)
      throw UsageError(kind + " has no posterior to sample from: --sample and --logvar need a VAE-type model (vae, multvae)");
    return;
  }
  if (!model_has_latent(kind))
    throw UsageError(kind + " has no latent space: embeddings and clusters need a VAE-type model (vae, multvae) or an SVD "
                     "model's user vectors (svd, svdpp)");
}

// A model for recommend / embed / cluster: an autoencoder on a backend, or an SVD model.
struct AnalysisModel {
  std::unique_ptr<Backend<float>> be;
  LoadedModel ae;
  std::unique_ptr<SvdModel> svd;
  std::string kind() const { return svd ? svd->kind() : ae.info.config.kind; }
};

AnalysisModel obtain_analysis_model(Options& o, const Dataset& d) {
  AnalysisModel a;
  if (!o.model_file.empty() && is_svd_kind(peek_model_kind(o.model_file))) {
    a.svd = std::move(load_svd(o, d).model);
    return a;
  }
  if (o.model_file.empty() && is_svd_kind(o.train.model.kind)) {
    if (o.train.data_dir.empty()) o.train.data_dir = d.source;
    a.svd = train_svd(o, d, std::cerr);
    return a;
  }
  a.be = make_backend(o);
  a.ae = obtain_model(o, *a.be, d);
  return a;
}

std::string user_ids_csv(const Dataset& d, const std::vector<int32_t>& users) {
  std::string csv = "row,user_id\n";
  for (size_t i = 0; i < users.size(); ++i) csv += std::to_string(i) + "," + text::csv_field(d.user_ids[users[i]]) + "\n";
  return csv;
}

// A file's bytes as they are, for comparing outputs (not text: npy files hold NUL bytes); ""
// when it cannot be read.
std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return in ? std::string((std::istreambuf_iterator<char>(in)), {}) : std::string();
}

// The t-SNE positions already in out_dir, when they were drawn from these very embeddings: the
// folder's embeddings.npy and user_ids.csv (the main job's) equal this run's, and its clusters.csv
// lists the same users in the same order. t-SNE does not depend on the clustering, so a new k
// recolours the map instead of removing it. False (nothing kept) on any doubt.
bool kept_tsne_positions(const std::string& out_dir, const Embeddings& e, const Dataset& d, std::vector<float>& xy,
                         std::vector<char>& has_xy) {
  namespace fs = std::filesystem;
  const int64_t n = static_cast<int64_t>(e.users.size());
  std::error_code ec;
  for (const char* f : {"/embeddings.npy", "/user_ids.csv", "/clusters.csv"})
    if (!fs::is_regular_file(out_dir + f, ec)) return false;
  std::string csv;
  try {
    if (file_bytes(out_dir + "/embeddings.npy") != npy_f32_bytes(e.z, n, e.dim) ||
        file_bytes(out_dir + "/user_ids.csv") != user_ids_csv(d, e.users))
      return false;
    csv = text::read_file(out_dir + "/clusters.csv");
  } catch (const DataError&) {
    return false;
  }
  std::istringstream in(csv);
  std::string line;
  if (!std::getline(in, line) || line != "user_id,cluster,x,y") return false;
  std::vector<float> pos(static_cast<size_t>(2 * n), 0.0f);
  std::vector<char> has(static_cast<size_t>(n), 0);
  int64_t kept = 0;
  std::vector<std::string_view> f;
  std::vector<std::string> storage;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::getline(in, line) || !text::split_csv(line, &f, &storage).empty() || f.size() != 4 ||
        f[0] != d.user_ids[e.users[i]])
      return false;
    const std::string x(f[2]), y(f[3]);
    if (x.empty() && y.empty()) continue;  // outside the t-SNE's subsample
    char* end = nullptr;
    const double xv = std::strtod(x.c_str(), &end);
    if (x.empty() || *end != '\0' || !std::isfinite(xv)) return false;
    const double yv = std::strtod(y.c_str(), &end);
    if (y.empty() || *end != '\0' || !std::isfinite(yv)) return false;
    pos[2 * i] = static_cast<float>(xv);
    pos[2 * i + 1] = static_cast<float>(yv);
    has[i] = 1;
    ++kept;
  }
  if (std::getline(in, line) || kept == 0) return false;
  xy = std::move(pos);
  has_xy = std::move(has);
  return true;
}

// Whether cluster writes the embeddings it clusters into out_dir, so that the folder's
// embeddings.npy is what its clusters.csv was computed from (and a later run can tell that its
// t-SNE map is of the same ones). Not when the folder holds them already, nor when it holds
// embed's output of this very model (its logvar.npy is this model's: embed --sample's draws, not
// cluster's to replace). Other embeddings (another model's, or draws without a logvar.npy to tell
// whose) are replaced, with a note, and a logvar.npy beside them goes too.
bool cluster_writes_embeddings(const std::string& out_dir, const Embeddings& e, const Dataset& d, StagedFiles& staged) {
  if (out_dir.empty()) return false;
  const std::string npy = out_dir + "/embeddings.npy", lv = out_dir + "/logvar.npy";
  std::error_code ec;
  if (!std::filesystem::exists(npy, ec)) return true;
  const int64_t n = static_cast<int64_t>(e.users.size());
  auto holds = [](const std::string& path, const std::string& bytes) { return file_bytes(path) == bytes; };
  const bool same_users = holds(out_dir + "/user_ids.csv", user_ids_csv(d, e.users));
  if (same_users && holds(npy, npy_f32_bytes(e.z, n, e.dim))) return false;
  if (same_users && !e.logvar.empty() && holds(lv, npy_f32_bytes(e.logvar, n, e.dim))) {
    std::cerr << "note: " << npy << " is kept: embed's draws of z from this model (its logvar.npy is this "
              << "model's); the clusters are of the latent means\n";
    return false;
  }
  const bool logvar = std::filesystem::exists(lv, ec);
  std::cerr << "note: " << npy << " and user_ids.csv" << (logvar ? ", logvar.npy" : "")
            << " of an earlier run are replaced by the embeddings clustered here: the folder's were other ones "
            << "(another model's, or draws of z without this model's logvar.npy beside them)\n";
  if (logvar) staged.remove_on_commit(lv, /*explained=*/true);
  return true;
}

// K-Means of the users' embeddings (`what` they are, for the report), the profile report, t-SNE
// when asked; clusters.csv, cluster_lift.csv and cluster_movies.csv (and embeddings.npy, user_ids.csv when
// write_embeddings) into out_dir, staged with the rest of the command's files.
void cluster_embeddings(const Embeddings& e, const std::string& what, const Dataset& d, const ClusterOptions& co,
                        const std::string& out_dir, bool write_embeddings, StagedFiles& staged,
                        const std::string& code_line = "") {
  const int64_t n = static_cast<int64_t>(e.users.size());
  if (co.k > n && co.skip_if_too_few) {
    std::cout << "\nK-Means skipped: " << n << " users, fewer than k = " << co.k << "\n";
    if (!out_dir.empty()) drop_analysis_files(staged, out_dir, write_embeddings);
    return;
  }
  if (co.k_min == 0 && co.k > n)
    throw UsageError("--k " + std::to_string(co.k) + " exceeds the " + std::to_string(n) + " users");
  auto ops = make_analysis_ops(co.cuda);
  KMeansOptions ko;
  ko.k = co.k;
  ko.n_init = co.n_init;
  ko.max_iter = co.max_iter;
  ko.seed = co.seed;
  KMeansResult km;
  double silhouette = std::numeric_limits<double>::quiet_NaN();
  int64_t silhouette_rows = 0;
  constexpr int64_t kSilhouetteRows = 5000;  // O(rows²): about a second on two cores
  if (co.k_min > 0) {
    // The notebook's loop over k: the elbow of the inertia, and the silhouette to pick by.
    KScan scan = kmeans_scan(*ops, e.z, n, e.dim, co.k_min, co.k_max, ko, kSilhouetteRows);
    std::cout << "\nK-Means for k = " << co.k_min << ".." << co.k_max << " on the " << what << " of " << n
              << " users (n_init = " << co.n_init << "); silhouette over "
              << (scan.silhouette_rows < n ? "a random sample of " + std::to_string(scan.silhouette_rows) + " users"
                                           : "all users")
              << "\n   k        inertia  silhouette\n";
    std::ostringstream csv;
    csv << "k,inertia,silhouette,iterations\n";
    LinePlot plot;
    plot.title = "Choosing k: K-Means of the " + what + " of " + std::to_string(n) + " users (" + d.name + ")";
    plot.x_label = "k (clusters)";
    LinePanel inertia{"inertia (the elbow)", {{"inertia", {}}}}, sil{"silhouette score (higher is better)", {{"silhouette", {}}}};
    for (const KScanRow& row : scan.rows) {
      char line[96];
      std::snprintf(line, sizeof line, "%4d  %13.6g  %10.4f%s\n", row.k, row.inertia, row.silhouette,
                    row.k == scan.best_k ? "  <- best" : "");
      std::cout << line;
      csv << row.k << "," << std::setprecision(10) << row.inertia << "," << row.silhouette << "," << row.iterations
          << "\n";
      plot.x.push_back(row.k);
      inertia.series[0].y.push_back(row.inertia);
      sil.series[0].y.push_back(row.silhouette);
    }
    std::cout << "best silhouette at k = " << scan.best_k << "; the profiles below use it\n";
    plot.panels = {inertia, sil};
    plot.marker_x = scan.best_k;
    plot.marker_label = "k = " + std::to_string(scan.best_k);
    if (!out_dir.empty()) {
      staged.add(out_dir + "/k_scan.csv", csv.str());
      staged.add(out_dir + "/k_scan.svg", lines_svg(plot));
    }
    km = std::move(scan.best);
    silhouette_rows = scan.silhouette_rows;
    for (const KScanRow& row : scan.rows)
      if (row.k == scan.best_k) silhouette = row.silhouette;
  } else {
    km = kmeans(*ops, e.z, n, e.dim, ko);
    // How separated the clusters are, on the scale users know from sklearn (−1 to 1).
    const std::vector<int32_t> sample = silhouette_sample(n, kSilhouetteRows, co.seed);
    silhouette_rows = static_cast<int64_t>(sample.size());
    try {
      silhouette = silhouette_score(e.z, e.dim, km.labels, sample);
    } catch (const UsageError&) {  // one cluster, or as many as users: no silhouette
    }
    if (!out_dir.empty())
      for (const char* f : {"/k_scan.csv", "/k_scan.svg"}) staged.remove_on_commit(out_dir + f);  // another k's
  }
  const int k = km.k;
  std::vector<int64_t> sizes(static_cast<size_t>(k), 0);
  for (int32_t l : km.labels) ++sizes[l];
  std::cout << "\nK-Means on the " << what << " of " << n << " users (" << e.dim << " dimensions, k = " << k
            << ", n_init = " << co.n_init << "): inertia " << km.inertia << " after " << km.iterations << " iterations";
  if (std::isfinite(silhouette)) {
    std::ostringstream sil;
    sil << std::fixed << std::setprecision(4) << silhouette;
    std::cout << "; silhouette " << sil.str()
              << (silhouette_rows < n ? " (a random sample of " + std::to_string(silhouette_rows) + " users)" : "");
  }
  std::cout << "\nCluster sizes:";
  for (int c = 0; c < k; ++c) std::cout << (c ? ", " : " ") << c << ": " << sizes[c];
  std::cout << "\n";
  if (!code_line.empty()) std::cout << code_line << "\n";
  if (e.empty_inputs > 0)
    std::cerr << "note: " << e.empty_inputs << (e.empty_inputs == 1 ? " user" : " users") << " had no usable ratings and " << (e.empty_inputs == 1 ? "was" : "were") << " encoded from an empty row\n";
  const std::vector<ClusterProfile> profiles = profile_clusters(d, e.users, km.labels, k);
  std::cout << "\n" << format_cluster_report(profiles);
  if (!d.planted_group.empty()) {
    std::vector<int32_t> planted;
    for (int32_t u : e.users) planted.push_back(d.planted_group[u]);
    std::cout << "Adjusted Rand index vs the planted groups: " << std::fixed << std::setprecision(4)
              << adjusted_rand_index(planted, km.labels) << "\n";
    std::cout.unsetf(std::ios::floatfield);
  }
  std::vector<float> xy;
  std::vector<char> has_xy(static_cast<size_t>(n), 0);
  std::string tsne_svg;  // the picture, when t-SNE ran or its positions were kept
  // The map of the users with positions (xy, has_xy), coloured by cluster.
  auto draw_tsne = [&](const std::string& subtitle) {
    ScatterPlot plot;
    plot.title = "t-SNE of the " + what + " of " + std::to_string(n) + " users (" + d.name + ")";
    plot.subtitle = subtitle;
    for (int64_t i = 0; i < n; ++i) {
      if (!has_xy[i]) continue;
      plot.xy.push_back(xy[2 * i]);
      plot.xy.push_back(xy[2 * i + 1]);
      plot.group.push_back(km.labels[i]);
    }
    for (int c = 0; c < k; ++c) {
      plot.legend.push_back("cluster " + std::to_string(c) + " (" + std::to_string(sizes[c]) + " users)");
      std::ostringstream l;  // the cluster's most distinctive genres, as in the report
      const ClusterProfile& pc = profiles[c];
      for (size_t j = 0; j < pc.lift_genres.size() && j < 3; ++j)
        l << (j ? ", " : "") << pc.lift_genres[j].name << " " << std::fixed << std::setprecision(2)
          << pc.lift_genres[j].lift << "x";
      plot.detail.push_back(l.str());
    }
    return scatter_svg(plot);
  };
  if (co.tsne) {
    TsneOptions to;
    to.seed = co.seed;
    to.max_points = co.tsne_max;
    to.perplexity = co.perplexity;
    const int64_t points = std::min<int64_t>(n, co.tsne_max);
    if (points < 2) throw UsageError("t-SNE needs at least 2 users");
    // Each point's neighbourhood holds about 3 x perplexity points: beyond (points - 1) / 3 every
    // point sees all the others and the map degenerates; below 1 it sees none.
    const double most = std::max(1.0, (points - 1) / 3.0);
    if (to.perplexity > most || to.perplexity < 1.0) {
      to.perplexity = std::clamp(to.perplexity, 1.0, most);
      std::cerr << "note: perplexity set to " << to.perplexity << " (it must lie in [1, (points - 1) / 3] for "
                << points << " points)\n";
    }
    // Exact t-SNE is quadratic (about 7 s for 2000 points on two CPU cores, minutes for 10 000);
    // Barnes-Hut, sklearn's default, is O(n log n) per iteration (9-14 s for 10 000). The GPU
    // runs exact t-SNE (0.7 s for 10 000 on an H200); the CPU exact up to kExactCpuPoints, where
    // it still takes seconds and gives the oracle's map.
    constexpr int64_t kExactCpuPoints = 1000;
    const bool barnes_hut =
        co.tsne_method == "barnes-hut" || (co.tsne_method == "auto" && !co.cuda && points > kExactCpuPoints);
    const std::string method = barnes_hut ? std::string("Barnes-Hut, theta 0.5") + (co.cuda ? ", on the CPU" : "")
                                          : std::string("exact") + (co.cuda ? ", on the GPU" : "");
    // Say so before a long CPU run rather than leaving the terminal silent for minutes.
    if (!co.cuda && !barnes_hut && points > 4000)
      std::cerr << "note: exact t-SNE of " << points << " points on the CPU takes minutes (about "
                << static_cast<int64_t>(7.0 * (static_cast<double>(points) / 2000.0) * (points / 2000.0)) / 60 + 1
                << " min on two cores); --tsne-method barnes-hut takes seconds\n";
    if (barnes_hut && points > 30000)
      std::cerr << "note: Barnes-Hut t-SNE of " << points << " points on the CPU takes minutes (its neighbour "
                << "search is quadratic); --tsne-max 10000 takes seconds\n";
    TsneResult t;
    bool drawn = true;
    try {
      t = barnes_hut ? tsne_barnes_hut(e.z, n, e.dim, to) : tsne(*ops, e.z, n, e.dim, to);
    } catch (const std::bad_alloc&) {
      const std::string msg =
          barnes_hut ? "Barnes-Hut t-SNE of " + std::to_string(points) + " points does not fit in memory: lower --tsne-max"
                     : "exact t-SNE of " + std::to_string(points) + " points holds " + std::to_string(points) + " x " +
                           std::to_string(points) +
                           " affinities and does not fit in memory: lower --tsne-max or use --tsne-method barnes-hut";
      if (!co.tsne_optional) throw UsageError(msg);
      std::cerr << "warning: " << msg << "; the run goes on without the picture\n";
      drawn = false;
    }
    if (drawn) {
      xy.assign(static_cast<size_t>(2 * n), 0.0f);
      for (int64_t i = 0; i < t.n; ++i) {
        const int32_t r = t.indices[i];
        xy[2 * r] = t.y[2 * i];
        xy[2 * r + 1] = t.y[2 * i + 1];
        has_xy[r] = 1;
      }
      std::cout << "t-SNE (" << method << "): " << t.n << " points"
                << (t.n < n ? " (a random subsample of " + std::to_string(n) + " users; " + co.tsne_max_flag + ")" : std::string(" (all users)"))
                << ", final KL divergence " << t.kl_divergence << " after " << t.iterations << " iterations\n";
      std::ostringstream sub;
      sub << "coloured by K-Means cluster (k = " << k << "); " << (barnes_hut ? "Barnes-Hut, " : "exact, ")
          << "perplexity " << to.perplexity << ", KL divergence "
          << std::setprecision(4) << t.kl_divergence << " after " << t.iterations << " iterations"
          << (t.n < n ? "; a random subsample of " + std::to_string(t.n) : std::string());
      tsne_svg = draw_tsne(sub.str());
    }
  } else if (!out_dir.empty() && kept_tsne_positions(out_dir, e, d, xy, has_xy)) {
    const int64_t kept = std::count(has_xy.begin(), has_xy.end(), 1);
    std::cout << "t-SNE: kept the positions of the " << kept << " users already in " << out_dir
              << "/clusters.csv (drawn from the same embeddings), coloured by these clusters\n";
    std::ostringstream sub;
    sub << "coloured by K-Means cluster (k = " << k << "); positions kept from the t-SNE already in this folder"
        << (kept < n ? "; a random subsample of " + std::to_string(kept) : std::string());
    tsne_svg = draw_tsne(sub.str());
  }
  if (out_dir.empty()) return;
  ensure_dir(out_dir);
  std::ostringstream csv;
  csv << "user_id,cluster,x,y\n";
  for (int64_t i = 0; i < n; ++i) {
    csv << text::csv_field(d.user_ids[e.users[i]]) << "," << km.labels[i] << ",";
    if (has_xy[i]) csv << std::setprecision(7) << xy[2 * i] << "," << xy[2 * i + 1];
    else csv << ",";
    csv << "\n";
  }
  staged.add(out_dir + "/clusters.csv", csv.str());
  staged.add(out_dir + "/cluster_lift.csv", cluster_lift_csv(profiles));
  staged.add(out_dir + "/cluster_movies.csv", cluster_movies_csv(d, profiles));
  bool picture_failed = false;  // the warning says why there is none
  if (!tsne_svg.empty()) {
    try {
      staged.add(out_dir + "/tsne.svg", tsne_svg);
    } catch (const DataError& err) {
      if (!co.tsne_optional) throw;
      std::cerr << "warning: " << err.what() << "; the run goes on without the picture\n";
      tsne_svg.clear();
      picture_failed = true;
    }
  }
  if (tsne_svg.empty()) {  // clusters.csv's x, y are empty now
    std::error_code ec;
    const bool explain = !picture_failed && std::filesystem::is_regular_file(out_dir + "/tsne.svg", ec);
    if (explain)  // the main job draws its map unless --no-tsne; cluster only with --tsne
      std::cerr << "note: " << out_dir << "/tsne.svg of an earlier run is removed: it was drawn from other "
                << "embeddings (or none are in the folder to compare); "
                << (co.tsne_optional ? "leave out --no-tsne" : "add --tsne") << " to draw this run's\n";
    staged.remove_on_commit(out_dir + "/tsne.svg", explain);
  }
  if (write_embeddings) {
    staged.add(out_dir + "/embeddings.npy", npy_f32_bytes(e.z, n, e.dim));
    staged.add(out_dir + "/user_ids.csv", user_ids_csv(d, e.users));
  }
}

}  // namespace

namespace {
// K-Means of the latent means, with the VAE literature's check of a collapsed posterior (Burda et
// al. 2016) first: a dimension whose mean does not move with the user carries nothing about the
// user. True when none does (said in a note).
bool cluster_latent_means(const Embeddings& e, const Dataset& d, const ClusterOptions& co, const std::string& out_dir,
                          bool write_embeddings, StagedFiles& staged) {
  const int64_t n = static_cast<int64_t>(e.users.size());
  const int active = active_latent_units(e.z, n, e.dim);
  std::ostringstream line;
  line << "Latent code: " << active << " of " << e.dim << " dimensions active (their mean varies across users: "
       << "variance above " << kActiveUnitVariance << ")";
  cluster_embeddings(e, "latent means", d, co, out_dir, write_embeddings, staged, line.str());
  const bool none = active == 0 && n >= 2;
  if (none)
    std::cerr << "note: no latent dimension is active: the posterior has collapsed to the prior (every user's code is "
                 "nearly the same), so these clusters, however high their silhouette, say little about the users; "
                 "--beta 0.0001 or --model multvae learn a code that does\n";
  return none;
}
}  // namespace

bool cluster_report(Backend<float>& be, Model<float>& m, const ModelFileInfo& info, const Dataset& d,
                    const ClusterOptions& co, const std::string& out_dir, bool write_embeddings, StagedFiles& staged) {
  const Embeddings e = encode_users(be, m, info, d, /*sample=*/false, /*logvar=*/false);
  ClusterOptions on_device = co;
  on_device.cuda = be.name() == "cuda";
  return cluster_latent_means(e, d, on_device, out_dir, write_embeddings, staged);
}

std::string svd_vectors_name(const SvdModel& m) {
  return "SVD user vectors (p_u" + std::string(m.options().plus_plus ? " + implicit term)" : ")");
}

void cluster_svd_report(const SvdModel& m, const Dataset& d, const ClusterOptions& co, const std::string& out_dir,
                        bool write_embeddings, StagedFiles& staged) {
  cluster_embeddings(svd_user_embeddings(m, d), svd_vectors_name(m), d, co, out_dir, write_embeddings, staged);
}

namespace {

ClusterOptions cluster_options(const Options& o) {
  ClusterOptions co;
  co.k = o.k;
  if (o.was_given("--k-range")) {
    // "A..B" (or "A-B"): both whole numbers, 2 ≤ A ≤ B, at most kMaxScan values.
    constexpr int kMaxScan = 50;
    const std::string& r = o.k_range;
    const size_t dots = r.find(".."), dash = r.find('-');
    const size_t at = dots != std::string::npos ? dots : dash;
    const size_t skip = dots != std::string::npos ? 2 : 1;
    auto whole = [](const std::string& t, int* v) {
      if (t.empty() || t.size() > 7 || t.find_first_not_of("0123456789") != std::string::npos) return false;
      *v = std::stoi(t);
      return true;
    };
    if (at == std::string::npos || !whole(r.substr(0, at), &co.k_min) || !whole(r.substr(at + skip), &co.k_max))
      throw UsageError("--k-range '" + text::escape(r, 40) + "': expected A..B or A-B, two whole numbers of at most 7 digits, e.g. 2..10");
    if (co.k_min < 2 || co.k_max < co.k_min)
      throw UsageError("--k-range " + text::escape(r, 40) + ": needs 2 <= A <= B (a silhouette compares two clusters or more)");
    if (co.k_max - co.k_min + 1 > kMaxScan)
      throw UsageError("--k-range " + text::escape(r, 40) + ": " + std::to_string(co.k_max - co.k_min + 1) +
                       " values of k, more than the " + std::to_string(kMaxScan) +
                       " one scan runs (each is a K-Means with --n-init restarts)");
  }
  co.n_init = o.n_init;
  co.max_iter = o.max_iter;
  co.tsne = o.tsne;
  co.tsne_max = o.tsne_max;
  co.perplexity = o.perplexity;
  co.tsne_method = o.tsne_method;
  co.seed = o.seed;
  return co;
}

// The CSV named by --out for a command that writes one file (recommend --all-users, similar
// --all-items): not a directory, its folder made and probed before any training.
void check_out_file(const Options& o, const std::string& flags) {
  namespace fs = std::filesystem;
  if (const int fd = own_stream_fd(o.out); fd >= 0) {  // /dev/stdout & co.: written through the descriptor
    if (const std::string why = check_own_stream(fd); !why.empty()) throw DataError(o.out, 0, why);
    return;
  }
  std::error_code ec;
  const fs::file_status st = fs::status(o.out, ec);  // through links
  if (fs::is_directory(st)) throw DataError(o.out, 0, "is a directory: " + flags + " --out names the CSV file to write");
  // The CSV would replace the model it is computed from.
  if (!o.model_file.empty() && fs::exists(st) && fs::equivalent(o.out, o.model_file, ec))
    throw DataError(o.out, 0, "is the --model-file being read: " + flags + " --out names another file (recs.csv, say)");
  if (fs::exists(st) && !fs::is_regular_file(st)) {  // /dev/stdout, a named pipe: written as it is
    if (::access(o.out.c_str(), W_OK) != 0) throw DataError(o.out, 0, std::string("not writable: ") + std::strerror(errno));
    return;
  }
  // A link's target is what gets replaced, so its folder is the one to probe.
  const fs::path parent = fs::path(link_target(o.out)).parent_path();
  check_out_dir(parent.empty() ? "." : parent.string(), /*lock=*/false);  // other files share the folder
}

// fallback_list / fallback_score: what a list is, and what its scores are, when there was no
// usable rating to give the model (the list is then not the model's).
// explain (may be null): fills each listed item's `because` from the user's ratings.
template <typename Rec>
int print_recommendations(Rec& rec, const Options& o, const Dataset& d, const std::string& kind,
                          const std::string& fallback_list, const std::string& fallback_score,
                          const ItemEffects* explain) {
  RecommendOptions ro;
  ro.top = o.top;
  ro.include_rated = o.include_rated;
  const std::string suffix = " (" + kind + (o.include_rated ? ", rated items included" : "") + "):";
  if (o.all_users) {
    const auto s = rec.write_all_users_csv(o.out, ro);
    // Status on stderr: --out may be /dev/stdout, where the CSV alone should go.
    std::cerr << "wrote " << o.out << ": " << s.rows << " recommendations for " << s.users << " users\n";
    if (s.popularity_fallbacks > 0) {
      // Their score column holds another quantity than everyone else's: say whose rows they are,
      // with the ids as the CSV writes them.
      const bool one = s.popularity_fallbacks == 1;
      std::string named;
      for (const std::string& u : s.fallback_users) named += (named.empty() ? "" : ", ") + text::csv_field(u);
      if (s.popularity_fallbacks > static_cast<int64_t>(s.fallback_users.size())) named += ", ...";
      std::cerr << "note: " << s.popularity_fallbacks << (one ? " user" : " users")
                << " without usable ratings got the " << fallback_list << " (their score = " << fallback_score
                << "): " << (one ? "user " : "users ") << named << "\n";
    }
    return 0;
  }
  RecommendResult r = !o.user.empty() ? rec.for_user(o.user, ro) : rec.for_ratings(o.ratings, ro);
  if (explain && r.popularity_fallback) r.notes.push_back("--explain: no usable ratings, so nothing to explain");
  if (explain && !r.popularity_fallback) {
    FoldInRow rated;
    if (!o.user.empty()) {
      const int64_t u = d.find_user(o.user);
      for (int64_t p = d.ratings.indptr[u]; p < d.ratings.indptr[u + 1]; ++p)
        rated.emplace_back(d.ratings.indices[p], d.ratings.values[p]);
    } else {
      rated = parse_foldin_ratings(o.ratings, d).ratings;
    }
    std::vector<int32_t> items;
    for (const Recommendation& x : r.items) items.push_back(x.item);
    const std::vector<int32_t> because = explain_recommendations(*explain, items, rated, explain->liked, d.num_items());
    bool any = false;
    for (size_t t = 0; t < r.items.size(); ++t) {
      r.items[t].because = because[t];
      any = any || because[t] >= 0;
      for (const auto& [item, rating] : rated)
        if (item == because[t]) r.items[t].because_rating = rating;
    }
    char liked_buf[32];
    std::snprintf(liked_buf, sizeof liked_buf, "%g", static_cast<double>(explain->liked));
    const std::string liked = liked_buf;
    if (explain->by_similarity())
      r.notes.push_back(any ? "because you liked: of your ratings >= " + liked +
                                  ", the item most similar to it (the correlation `similar` lists; - where none is above 0)"
                            : "--explain: none of your ratings >= " + liked + " is of an item similar to these");
    else
      r.notes.push_back(any ? "because you liked: of your ratings >= " + liked + ", the one whose rating alone pulls the item's " +
                                  explain->unit + " up most, beyond what it gives the average item (- where none does)"
                            : "--explain: none of your ratings >= " + liked + " pulls any of these items up");
  }
  const std::string who = o.user.empty() ? "the given ratings" : "user " + o.user;
  // The list holds at most the items there are to recommend, and without usable ratings it is
  // the fallback ranking, not the model's: title it by what it holds.
  const std::string what = r.popularity_fallback ? fallback_list : "recommendations";
  const std::string why = r.popularity_fallback ? " (no usable ratings for " + kind + " to score; score = " +
                                                      fallback_score + (o.include_rated ? ", rated items included" : "") +
                                                      "):"
                                                : suffix;
  const std::string title = static_cast<size_t>(o.top) > r.items.size()
                                ? "All " + std::to_string(r.items.size()) + " candidates (fewer than --top " +
                                      std::to_string(o.top) + ") for " + who + why
                                : "Top " + std::to_string(o.top) + " " + what + " for " + who + why;
  std::cerr << format_recommendation_notes(r);  // stdout holds the list alone
  std::cout << format_recommendations(r, d, title, /*with_notes=*/false);
  return 0;
}

}  // namespace

int run_recommend(Options& o) {
  prepare_training(o);
  const int modes = (!o.user.empty()) + (o.ratings_given ? 1 : 0) + (o.all_users ? 1 : 0);
  // A --ratings value that names a file (and is no id:rating list) is read as one; checked here,
  // before any training, like --out.
  if (o.ratings_given && o.ratings.find(':') == std::string::npos &&
      o.ratings.find_first_not_of(" ,") != std::string::npos) {
    const std::string path = o.ratings.rfind('@', 0) == 0 ? o.ratings.substr(1) : o.ratings;
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (std::filesystem::is_directory(st))
      throw UsageError("--ratings " + o.ratings + ": is a directory, not a file of item_id:rating lines");
    // A pipe or device (--ratings <(...)) is read as the file it stands for.
    if (!std::filesystem::exists(st))
      throw UsageError("--ratings " + o.ratings + ": no such file, and no item_id:rating list");
    o.ratings = "@" + path;
  }
  if (modes == 0) throw UsageError("recommend needs --user ID, --ratings \"item:rating,...\" or --all-users");
  if (modes > 1) throw UsageError("give only one of --user, --ratings and --all-users");
  if (o.all_users && o.out.empty()) throw UsageError("--all-users writes a CSV: give --out recs.csv");
  if (o.explain) {
    if (o.all_users) throw UsageError("--explain annotates one list (--user or --ratings), not --all-users");
    require_item_effects(analysis_kind(o));  // before any training
  }
  if (o.top < 1) throw UsageError("--top must be at least 1");
  if (o.all_users) check_out_file(o, "--all-users");  // the CSV's folder, before any training
  if (!o.all_users && o.was_given("--out"))
    std::cerr << "note: --out is ignored: recommend --user / --ratings prints its list (--all-users writes every "
                 "user's to --out)\n";
  const Dataset d = load_data(o);
  AnalysisModel a = obtain_analysis_model(o, d);
  if (a.svd) {
    SvdRecommender rec(*a.svd, d);
    const ItemEffects e = item_effects(*a.svd);
    return print_recommendations(rec, o, d, a.kind(), "items by item bias", "mu + b_i", o.explain ? &e : nullptr);
  }
  Recommender rec(*a.be, *a.ae.model, a.ae.info, d);
  std::unique_ptr<ItemEffects> e;
  if (o.explain)
    e = std::make_unique<ItemEffects>(item_effects(rec, *a.be, *a.ae.model, a.ae.info, d.rating_min, d.rating_max));
  return print_recommendations(rec, o, d, a.kind(), "most popular items", "the item's number of ratings", e.get());
}

int run_similar(Options& o) {
  prepare_training(o);
  if (o.item.empty() && !o.all_items) throw UsageError("similar needs --item ID (or a part of a title) or --all-items");
  if (!o.item.empty() && o.all_items) throw UsageError("give only one of --item and --all-items");
  if (o.all_items) {
    if (o.out.empty()) throw UsageError("--all-items writes a CSV: give --out similar.csv");
    check_out_file(o, "--all-items");
  }
  // Models without item effects are refused before any data is read or model trained.
  const std::string kind = analysis_kind(o);
  require_item_effects(kind);
  const Dataset d = load_data(o);
  const int32_t item = o.all_items ? -1 : find_item_by_id_or_title(o.item, d);
  // A heldout or timed-protocol model keeps only items some training user liked (rated at or above
  // the threshold; timed: before the held-out part): one that nobody did cannot be a column, which
  // is known before training.
  if (item >= 0 && o.model_file.empty() && is_foldin_protocol(o.train.protocol) && !is_svd_kind(kind)) {
    bool column = false;
    std::string when;
    if (o.train.protocol == "heldout") {
      const Csr& r = d.ratings;
      for (int64_t p = 0; p < r.nnz() && !column; ++p)
        column = r.indices[p] == item && (o.train.heldout.threshold <= 0 || r.values[p] >= o.train.heldout.threshold);
    } else {
      const TemporalSplit s = split_timed(d, o.train);
      column = std::binary_search(s.item_map.begin(), s.item_map.end(), item);
      when = o.train.protocol == "temporal" ? " before its users' held-out latest ones" : " before " + utc_time(s.val_from);
    }
    if (!column) {
      std::ostringstream t;
      t << o.train.heldout.threshold;
      throw UsageError("item " + d.item_ids[item] + " has no rating >= --threshold " + t.str() + when + ", so a " +
                       o.train.protocol + "-protocol model has no column for it: lower --threshold, or use --protocol seed");
    }
  }
  AnalysisModel a = obtain_analysis_model(o, d);
  auto report = [&](const ItemEffects& e) {
    if (o.all_items) {
      const int64_t rows = write_similar_csv(e, d, o.top, o.out, o.min_ratings);
      std::cerr << "wrote " << o.out << ": " << rows << " rows, the top " << o.top << " items by "
                << (e.by_similarity() ? "similarity" : "lift") << " for each of the " << e.model << " model's items\n";
    } else {
      std::cout << format_similar(e, item, most_similar(e, item, o.top, d, o.min_ratings), d, o.min_ratings);
    }
  };
  if (a.svd) {
    report(item_effects(*a.svd));
    return 0;
  }
  Recommender rec(*a.be, *a.ae.model, a.ae.info, d);
  report(item_effects(rec, *a.be, *a.ae.model, a.ae.info, d.rating_min, d.rating_max));
  return 0;
}

namespace {

// embed --sample draws its noise from --seed when one is given, else from the model's own seed.
ModelFileInfo sample_info(ModelFileInfo info, const Options& o) {
  if (o.was_given("--seed")) info.seed = o.seed;
  return info;
}

}  // namespace

int run_embed(Options& o) {
  prepare_training(o);
  if (o.out.empty()) throw UsageError("embed writes files: give --out DIR");
  require_user_codes(analysis_kind(o), o.sample || o.logvar);
  check_out_dir(o.out);
  const Dataset d = load_data(o);
  AnalysisModel a = obtain_analysis_model(o, d);
  if (a.svd && (o.sample || o.logvar))
    throw UsageError(a.kind() + " has no posterior to sample from: --sample and --logvar need a VAE-type model (vae, multvae)");
  const Embeddings e = a.svd ? svd_user_embeddings(*a.svd, d)
                             : encode_users(*a.be, *a.ae.model, sample_info(a.ae.info, o), d, o.sample, o.logvar);
  ensure_dir(o.out);
  const int64_t n = static_cast<int64_t>(e.users.size());
  StagedFiles staged;
  staged.add(o.out + "/embeddings.npy", npy_f32_bytes(e.z, n, e.dim));
  if (o.logvar) staged.add(o.out + "/logvar.npy", npy_f32_bytes(e.logvar, n, e.dim));
  else staged.remove_on_commit(o.out + "/logvar.npy");  // an earlier model's, of another shape
  staged.add(o.out + "/user_ids.csv", user_ids_csv(d, e.users));
  staged.commit();
  // What it wrote and removed on stderr, as every command's run files.
  std::cerr << "wrote " << o.out << "/embeddings.npy (" << n << " x " << e.dim << ", "
            << (a.svd ? (a.svd->options().plus_plus ? "SVD++ user vectors, p_u + implicit term" : "SVD user vectors p_u") : o.sample ? "sampled z" : "mu") << ")" << (o.logvar ? ", logvar.npy" : "") << ", user_ids.csv\n";
  for (const std::string& p : staged.removed())
    std::cerr << "removed " << p << " (an earlier run's, which this run does not produce)\n";
  note_kept_files(staged, o.out);
  if (e.empty_inputs > 0)
    std::cerr << "note: " << e.empty_inputs << (e.empty_inputs == 1 ? " user" : " users") << " had no usable ratings and " << (e.empty_inputs == 1 ? "was" : "were") << " encoded from an empty row\n";
  return 0;
}

int run_cluster(Options& o) {
  prepare_training(o);
  if (o.k < 1) throw UsageError("--k must be at least 1");
  (void)cluster_options(o);  // a malformed --k-range fails before any training
  require_user_codes(analysis_kind(o), false);
  // The main app's --k (before `cluster`) is the ranking cut-off; the clusters' k is cluster's own.
  if (o.was_given("--k"))
    std::cerr << "note: --k " << o.train.k << " before `cluster` is the ranking cut-off of the seed protocol's "
              << "metrics, which cluster does not report: it is not the number of clusters; "
              << (o.was_given("--k-range") ? "clustering with --k-range " + text::escape(o.k_range, 40)
                                           : "clustering with k = " + std::to_string(o.k) +
                                                 (o.was_given("cluster --k")
                                                      ? std::string()
                                                      : " (give the number of clusters after the subcommand: cluster --k N)"))
              << "\n";
  // Without --out the t-SNE coordinates would go nowhere, and on the CPU it can take minutes.
  if (o.tsne && o.out.empty()) {
    std::cerr << "note: --tsne skipped: its x, y go to clusters.csv and tsne.svg under --out, and no --out was given\n";
    o.tsne = false;
  }
  check_out_dir(o.out);
  const Dataset d = load_data(o);
  AnalysisModel a = obtain_analysis_model(o, d);
  StagedFiles staged;
  std::error_code ec;
  if (a.svd) {
    ClusterOptions co = cluster_options(o);
    co.cuda = o.device != "cpu" && cuda_device_available();
    const Embeddings e = svd_user_embeddings(*a.svd, d);
    cluster_embeddings(e, svd_vectors_name(*a.svd), d, co, o.out, cluster_writes_embeddings(o.out, e, d, staged), staged);
  } else {
    // logvar only to recognise embed's output of this model in the folder.
    const bool logvar = !o.out.empty() && std::filesystem::exists(o.out + "/logvar.npy", ec);
    const Embeddings e = encode_users(*a.be, *a.ae.model, a.ae.info, d, /*sample=*/false, logvar);
    ClusterOptions co = cluster_options(o);
    co.cuda = a.be->name() == "cuda";
    cluster_latent_means(e, d, co, o.out, cluster_writes_embeddings(o.out, e, d, staged), staged);
  }
  commit_and_report(staged, o.out, "cluster_report.html");  // nothing is staged without --out
  return 0;
}

}  // namespace vae::cli
