// The analysis path on the GPU against the CPU oracle: the same weights (a model file written by
// a CPU run) loaded on both backends give the same recommendations (top-k with the rated items
// excluded, on the device), the same fold-in outputs and the same `similar` lifts (item-based
// AutoRec: similarities). Skips without a device.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "analysis/model_file.h"
#include "analysis/recommend.h"
#include "analysis/similar.h"
#include "backend/backend.h"
#include "data/dataset.h"
#include "trained_model.h"

namespace {

using namespace vae;

const Dataset& data() {
  static const Dataset d = test::synthetic_data(150, 200, 4000, 3, 4);
  return d;
}

bool near(double a, double b) { return std::fabs(a - b) <= 1e-6 + 1e-5 * std::fabs(b); }

// Same length, scores position by position, and the same items wherever the score is not tied
// with a neighbour (a near-tie may order its items either way on either device).
void expect_same_list(const RecommendResult& g, const RecommendResult& c, const std::string& what) {
  ASSERT_EQ(g.items.size(), c.items.size()) << what;
  for (size_t r = 0; r < c.items.size(); ++r) {
    EXPECT_TRUE(near(g.items[r].score, c.items[r].score))
        << what << " rank " << r + 1 << ": gpu " << g.items[r].score << " cpu " << c.items[r].score;
    const bool tied = (r > 0 && near(c.items[r - 1].score, c.items[r].score)) ||
                      (r + 1 < c.items.size() && near(c.items[r + 1].score, c.items[r].score));
    if (!tied) {
      EXPECT_EQ(g.items[r].item_id, c.items[r].item_id) << what << " rank " << r + 1;
    }
  }
}

TEST(CudaRecommend, ListsFoldInOutputsAndSimilarMatchTheCpu) {
  if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
  const Dataset& d = data();
  const std::string path =
      ::testing::TempDir() + "/cuda_recommend_" + std::to_string(::getpid()) + ".safetensors";
  struct Case {
    std::string kind, protocol;
    int hidden;
  };
  for (const Case& k : std::vector<Case>{{"vae", "seed", 0},
                                         {"multvae", "heldout", 32},
                                         {"cdae", "seed", 16},
                                         {"autorec", "seed", 16},
                                         {"i-autorec", "ratings", 16}}) {
    SCOPED_TRACE(k.kind + " / " + k.protocol);
    test::Trained t = test::train_small(d, k.kind, k.protocol, k.hidden);
    save_model_file(path, *t.be, *t.r.model_ptr, t.info, d);
    auto cpu_be = make_cpu_backend<float>(GemmPrecision::exact);
    auto gpu_be = make_cuda_backend(GemmPrecision::exact);
    LoadedModel c = load_model_file(path, *cpu_be, d, 64), g = load_model_file(path, *gpu_be, d, 64);
    Recommender rc(*cpu_be, *c.model, c.info, d), rg(*gpu_be, *g.model, g.info, d);
    RecommendOptions o;
    o.top = 20;
    for (int u : {0, 7, 33, 149}) {
      const std::string id = d.user_ids[u];
      expect_same_list(rg.for_user(id, o), rc.for_user(id, o), "user " + id);
    }
    if (k.kind == "i-autorec") {  // no new users: items compared by their predictions instead
      const ItemEffects eg = item_effects(rg, *gpu_be, *g.model, g.info, d.rating_min, d.rating_max);
      const ItemEffects ec = item_effects(rc, *cpu_be, *c.model, c.info, d.rating_min, d.rating_max);
      ASSERT_EQ(eg.items, ec.items);
      const std::vector<SimilarItem> sg = most_similar(eg, ec.items.front(), 5, d),
                                     sc = most_similar(ec, ec.items.front(), 5, d);
      ASSERT_EQ(sg.size(), sc.size());
      for (size_t r = 0; r < sc.size(); ++r)
        EXPECT_NEAR(sg[r].effect, sc[r].effect, 1e-4) << "similarity rank " << r + 1;
      continue;
    }
    const std::string spec = d.item_ids[3] + ":5," + d.item_ids[40] + ":4," + d.item_ids[77] + ":2";
    expect_same_list(rg.for_ratings(spec, o), rc.for_ratings(spec, o), "ratings " + spec);

    const std::vector<FoldInRow> users{FoldInRow{{3, 5.f}, {40, 4.f}}, FoldInRow{{12, 5.f}}, FoldInRow{}};
    const auto og = rg.fold_in_outputs(users), oc = rc.fold_in_outputs(users);
    ASSERT_EQ(og.size(), oc.size());
    for (size_t u = 0; u < oc.size(); ++u)
      for (size_t j = 0; j < oc[u].size(); ++j) {
        ASSERT_EQ(std::isnan(og[u][j]), std::isnan(oc[u][j])) << "row " << u << " item " << j;
        if (!std::isnan(oc[u][j])) {
          EXPECT_TRUE(near(og[u][j], oc[u][j])) << "row " << u << " item " << j;
        }
      }

    const ItemEffects eg = item_effects(rg, *gpu_be, *g.model, g.info, d.rating_min, d.rating_max);
    const ItemEffects ec = item_effects(rc, *cpu_be, *c.model, c.info, d.rating_min, d.rating_max);
    int32_t item = 0;
    while (std::isnan(oc[2][item])) ++item;  // a model column
    const std::vector<SimilarItem> sg = most_similar(eg, item, 5, d), sc = most_similar(ec, item, 5, d);
    ASSERT_EQ(sg.size(), sc.size());
    for (size_t r = 0; r < sc.size(); ++r)
      EXPECT_NEAR(sg[r].effect, sc[r].effect, 1e-4 + 1e-4 * std::fabs(sc[r].effect)) << "rank " << r + 1;
  }
  std::filesystem::remove(path);
}

}  // namespace
