// Loader tests on tiny hand-written fixtures for every supported format, plus one test per
// kind of bad input checking that DataError names the file and the offending line.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "data/dataset.h"
#include "data/text_reader.h"

namespace fs = std::filesystem;
using vae::DataError;
using vae::Dataset;

namespace {

class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) / ("vae_loaders_" + std::to_string(getpid()) + "_" +
                                              info->test_suite_name() + "_" + info->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // Writes `content` byte for byte to root/rel (creating folders) and returns the path.
  std::string write(const std::string& rel, const std::string& content) {
    const fs::path p = root_ / rel;
    fs::create_directories(p.parent_path());
    std::ofstream out(p, std::ios::binary);
    out << content;
    return p.string();
  }
  std::string path(const std::string& rel) const { return (root_ / rel).string(); }

  fs::path root_;
};

// Message of the DataError that f throws; a test failure when it throws none.
std::string data_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a DataError";
  return "";
}

#define EXPECT_HAS(msg, part) \
  EXPECT_NE((msg).find(part), std::string::npos) << "message: " << (msg) << "\nwanted: " << (part)

// ---- ml-100k fixture ---------------------------------------------------------------------

const char* const kGenres100k[] = {
    "unknown",     "Action", "Adventure", "Animation", "Children's", "Comedy",  "Crime",
    "Documentary", "Drama",  "Fantasy",   "Film-Noir", "Horror",     "Musical", "Mystery",
    "Romance",     "Sci-Fi", "Thriller",  "War",       "Western"};

std::string genre_file_100k() {
  std::string s;
  for (int g = 0; g < 19; ++g) s += std::string(kGenres100k[g]) + "|" + std::to_string(g) + "\n";
  return s + "\n";  // the real file ends with a blank line
}

std::string item_line(const std::string& id, const std::string& title, std::vector<int> genres,
                      int nflags = 19) {
  std::string s = id + "|" + title + "|01-Jan-1995||http://us.imdb.com/M/title-exact?x";
  for (int g = 0; g < nflags; ++g) {
    bool on = false;
    for (int x : genres) on = on || x == g;
    s += on ? "|1" : "|0";
  }
  return s + "\n";
}

const char* const kUData =
    "10\t2\t4\t881250949\n"
    "1\t1\t5\t874965758\n"
    "1\t3\t3\t876893171\n"
    "2\t1\t4\t888550871\n"
    "10\t1\t2\t881250950\n";

std::string default_uitem() {
  return item_line("1", "Toy Story (1995)", {3, 4, 5}) +
         item_line("2", "Caf\xe9 Society (1995)", {0}) +  // Latin-1 é
         item_line("3", "Heat (1995)", {1, 6, 16}) + item_line("4", "Never Rated (1996)", {8});
}

class LoaderMl100k : public LoaderTest {
 protected:
  // A complete small ml-100k folder; pass a non-null string to replace a file's content.
  std::string make(const std::string& udata = kUData, const std::string& uitem = default_uitem(),
                   bool with_occupation_file = true) {
    write("ml-100k/u.data", udata);
    write("ml-100k/u.item", uitem);
    write("ml-100k/u.genre", genre_file_100k());
    write("ml-100k/u.user",
          "1|24|M|technician|85711\n2|53|F|other|94043\n10|53|M|lawyer|90703\n"
          "11|30|F|writer|00000\n");
    if (with_occupation_file)
      write("ml-100k/u.occupation", "administrator\nlawyer\nother\ntechnician\nwriter\n");
    return path("ml-100k");
  }
};

TEST_F(LoaderMl100k, ReadsRatingsItemsGenresAndUsers) {
  const Dataset d = vae::load_ml100k(make());
  EXPECT_EQ(d.format, "ml-100k");
  EXPECT_EQ(d.name, "ml-100k");
  EXPECT_EQ(d.num_users(), 3);
  EXPECT_EQ(d.num_items(), 3);  // item 4 has no ratings
  EXPECT_EQ(d.num_ratings(), 5);
  // Numeric order, not first appearance ("10" came first) and not text order ("10" < "2").
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"1", "2", "10"}));
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(d.ratings.indptr, (std::vector<int64_t>{0, 2, 3, 5}));
  EXPECT_EQ(d.ratings.indices, (std::vector<int32_t>{0, 2, 0, 0, 1}));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{5, 3, 4, 2, 4}));
  EXPECT_EQ(d.rating_min, 1.0f);
  EXPECT_EQ(d.rating_max, 5.0f);

  ASSERT_EQ(d.titles.size(), 3u);
  EXPECT_EQ(d.titles[0], "Toy Story (1995)");
  EXPECT_EQ(d.titles[1], "Caf\xc3\xa9 Society (1995)");  // converted to UTF-8
  ASSERT_EQ(d.genre_names.size(), 19u);
  EXPECT_EQ(d.genre_names[0], "unknown");
  EXPECT_EQ(d.genre_names[4], "Children's");
  EXPECT_EQ(d.item_genres, (std::vector<uint32_t>{(1u << 3) | (1u << 4) | (1u << 5), 1u,
                                                  (1u << 1) | (1u << 6) | (1u << 16)}));

  ASSERT_FALSE(d.users.empty());
  EXPECT_EQ(d.users.occupation_names,
            (std::vector<std::string>{"administrator", "lawyer", "other", "technician", "writer"}));
  EXPECT_EQ(d.users.age, (std::vector<int>{24, 53, 53}));
  EXPECT_EQ(d.users.gender, (std::vector<char>{'M', 'F', 'M'}));
  EXPECT_EQ(d.users.occupation, (std::vector<int>{3, 2, 1}));
  EXPECT_EQ(d.find_user("10"), 2);
  EXPECT_EQ(d.find_item("4"), -1);
}

TEST_F(LoaderMl100k, DerivesOccupationsFromUsersWhenNoOccupationFile) {
  const Dataset d = vae::load_ml100k(make(kUData, default_uitem(), false));
  // First-seen order in u.user, including the user without ratings.
  EXPECT_EQ(d.users.occupation_names,
            (std::vector<std::string>{"technician", "other", "lawyer", "writer"}));
  EXPECT_EQ(d.users.occupation, (std::vector<int>{0, 1, 2}));
}

TEST_F(LoaderMl100k, AcceptsCrlfBlankLinesAndMissingFinalNewline) {
  const Dataset d = vae::load_ml100k(make("1\t1\t5\t1\r\n\r\n2\t3\t4\t2\r\n1\t2\t1\t3"));
  EXPECT_EQ(d.num_ratings(), 3);
  EXPECT_EQ(d.num_users(), 2);
  EXPECT_EQ(d.ratings.values, (std::vector<float>{5, 1, 4}));
}

// Classic Mac line ends (CR only) are line ends; compressed, zipped and UTF-16 files are named.
TEST_F(LoaderMl100k, ReadsCrOnlyLinesAndNamesCompressedOrUtf16Files) {
  const Dataset d = vae::load_ml100k(make("1\t1\t5\t1\r2\t3\t4\t2\r\r1\t2\t1\t3\r"));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{5, 1, 4}));
  const std::string bad = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\r2\t3\tx\t2\r")); });
  EXPECT_HAS(bad, "u.data:2: non-numeric rating 'x'");  // line numbers count CR-ended lines
  EXPECT_HAS(data_error([&] { vae::load_ml100k(make(std::string("\x1f\x8b\x08\0\0\0", 6))); }),
             "u.data: is gzip-compressed: decompress it first (gunzip)");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(make(std::string("PK\x03\x04\x14\0", 6))); }),
             "u.data: is a zip archive: unzip it first");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(make(std::string("\xff\xfe" "1\0\t\0", 6))); }),
             "u.data: is UTF-16 text: save it as UTF-8");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(make(std::string("1\0\t\0", 4))); }), "is UTF-16 text");
}

TEST_F(LoaderMl100k, DispatchAndLoadDatasetAgree) {
  const std::string dir = make();
  const Dataset a = vae::load_ml100k(dir);
  const Dataset b = vae::load_movielens_dir(dir + "/");
  std::string note;
  const Dataset c = vae::load_dataset(dir, &note);
  EXPECT_EQ(b.name, "ml-100k");
  EXPECT_EQ(a.fingerprint(), b.fingerprint());
  EXPECT_EQ(a.fingerprint(), c.fingerprint());
  EXPECT_EQ(c.source, dir);
  EXPECT_HAS(note, "ml-100k");
}

// ---- ml-1m / ml-10m ------------------------------------------------------------------------

class LoaderMl1m : public LoaderTest {
 protected:
  std::string make(const std::string& ratings =
                       "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
                       "6040::3408::4::978300275\n",
                   const std::string& movies =
                       "661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
                       "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
                       "3408::Cr\xe8me Br\xfbl\xe9"
                       "e (2000)::Drama|Romance\n"
                       "3409::Unrated (2000)::Comedy\n",
                   const std::string& users =
                       "1::F::1::10::48067\n2::M::56::16::70072\n6040::M::25::6::11106\n") {
    write("ml-1m/ratings.dat", ratings);
    write("ml-1m/movies.dat", movies);
    write("ml-1m/users.dat", users);
    return path("ml-1m");
  }
};

TEST_F(LoaderMl1m, ReadsRatingsMoviesAndUsers) {
  const Dataset d = vae::load_movielens_dir(make());
  EXPECT_EQ(d.format, "ml-1m");
  EXPECT_EQ(d.name, "ml-1m");
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"1", "2", "6040"}));
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"661", "1193", "3408"}));
  EXPECT_EQ(d.ratings.indptr, (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_EQ(d.ratings.indices, (std::vector<int32_t>{0, 1, 1, 2}));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{3, 5, 4, 4}));
  EXPECT_EQ(d.titles[2],
            "Cr\xc3\xa8me Br\xc3\xbbl\xc3\xa9"
            "e (2000)");
  ASSERT_EQ(d.genre_names.size(), 18u);
  EXPECT_EQ(d.genre_names[3], "Children's");
  EXPECT_EQ(d.item_genres[0], (1u << 2) | (1u << 3) | (1u << 11));
  EXPECT_EQ(d.item_genres[2], (1u << 7) | (1u << 13));
  ASSERT_EQ(d.users.occupation_names.size(), 21u);
  EXPECT_EQ(d.users.occupation_names[0], "other");
  EXPECT_EQ(d.users.occupation_names[20], "writer");
  const auto occ = [&](int u) { return d.users.occupation_names[d.users.occupation[u]]; };
  EXPECT_EQ(occ(0), "K-12 student");
  EXPECT_EQ(occ(1), "self-employed");
  EXPECT_EQ(occ(2), "doctor/health care");
  EXPECT_EQ(d.users.gender, (std::vector<char>{'F', 'M', 'M'}));
  EXPECT_EQ(d.users.age, (std::vector<int>{1, 56, 25}));
}

TEST_F(LoaderMl1m, Ml10mStyleHasHalfStarsNoUsersAndUtf8Titles) {
  write("ml-10m/ratings.dat", "1::1::3.5::1\n1::2::0.5::2\n2::3::5::3\n");
  write("ml-10m/movies.dat",
        "1::Toy Story (1995)::Adventure|Animation|Children|Comedy|Fantasy\n"
        "2::Am\xc3\xa9lie (2001)::IMAX|Documentary\n3::Nothing (2009)::(no genres listed)\n");
  const Dataset d = vae::load_movielens_dir(path("ml-10m"));
  EXPECT_EQ(d.name, "ml-10m");
  EXPECT_EQ(d.ratings.values, (std::vector<float>{3.5f, 0.5f, 5.0f}));
  EXPECT_EQ(d.rating_min, 0.5f);
  EXPECT_TRUE(d.users.empty());
  EXPECT_EQ(d.titles[1], "Am\xc3\xa9lie (2001)");  // already UTF-8: left alone
  ASSERT_EQ(d.genre_names.size(), 19u);
  EXPECT_EQ(d.genre_names[3], "Children");  // spelled as the file spells it
  EXPECT_EQ(d.genre_names[18], "IMAX");
  EXPECT_EQ(d.item_genres[1], (1u << 18) | (1u << 6));
  EXPECT_EQ(d.item_genres[2], 0u);
}

// ---- ml-latest ---------------------------------------------------------------------------

class LoaderMlLatest : public LoaderTest {
 protected:
  std::string make(const std::string& ratings =
                       "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,11,0.5,964981247\n"
                       "2,11,5.0,964982224\n2,30,3.5,964983815\n3,1,2.5,964982931\n"
                       "3,5,1.0,964982400\n",
                   const std::string& movies =
                       "movieId,title,genres\n"
                       "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
                       "5,Father of the Bride Part II (1995),(no genres listed)\n"
                       "11,\"American President, The (1995)\",Comedy|Drama|Romance\n"
                       "30,\"The \"\"Quoted\"\" Film, Part 2 (2001)\",Mockumentary|Drama\n"
                       "31,Am\xc3\xa9lie (2001),Comedy|Romance\n"
                       "40,Unrated (2002),Experimental\n") {
    write("ml-latest-small/ratings.csv", ratings);
    write("ml-latest-small/movies.csv", movies);
    return path("ml-latest-small");
  }
};

TEST_F(LoaderMlLatest, ReadsQuotedTitlesAndGenreList) {
  const Dataset d = vae::load_movielens_dir(make());
  EXPECT_EQ(d.format, "ml-latest");
  EXPECT_EQ(d.name, "ml-latest-small");
  EXPECT_EQ(d.num_users(), 3);
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"1", "5", "11", "30"}));  // 31, 40 unrated
  EXPECT_EQ(d.ratings.indptr, (std::vector<int64_t>{0, 2, 4, 6}));
  EXPECT_EQ(d.ratings.indices, (std::vector<int32_t>{0, 2, 2, 3, 0, 1}));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{4.0f, 0.5f, 5.0f, 3.5f, 2.5f, 1.0f}));
  EXPECT_EQ(d.rating_min, 0.5f);
  EXPECT_EQ(d.rating_max, 5.0f);
  EXPECT_EQ(d.titles[2], "American President, The (1995)");
  EXPECT_EQ(d.titles[3], "The \"Quoted\" Film, Part 2 (2001)");
  // Fixed MovieLens list, then other names found on rated movies in first-seen order
  // (unrated movie 40's "Experimental" is left out).
  ASSERT_EQ(d.genre_names.size(), 20u);
  EXPECT_EQ(d.genre_names[0], "Action");
  EXPECT_EQ(d.genre_names[11], "IMAX");
  EXPECT_EQ(d.genre_names[19], "Mockumentary");
  EXPECT_EQ(d.item_genres[1], 0u);                      // (no genres listed)
  EXPECT_EQ(d.item_genres[3], (1u << 19) | (1u << 7));  // Mockumentary|Drama
  EXPECT_TRUE(d.users.empty());
}

TEST_F(LoaderMlLatest, AcceptsCrlfFiles) {
  const Dataset d =
      vae::load_movielens_dir(make("userId,movieId,rating,timestamp\r\n1,1,4.0,1\r\n2,1,3.0,2\r\n",
                                   "movieId,title,genres\r\n1,\"Toy Story (1995)\",Comedy\r\n"));
  EXPECT_EQ(d.num_ratings(), 2);
  EXPECT_EQ(d.titles[0], "Toy Story (1995)");
  EXPECT_EQ(d.item_genres[0], 1u << 4);
}

// ---- generic CSV ---------------------------------------------------------------------------

class LoaderCsv : public LoaderTest {};

TEST_F(LoaderCsv, StringIdsWithHeaderKeepFirstAppearanceOrder) {
  const std::string f = write("my_ratings.csv",
                              "user,item,rating,timestamp\n"
                              "zoe,\"The Matrix\",4.5,100\n"
                              "bob,m2,2,\n"
                              "zoe,m2,-1\n");
  const Dataset d = vae::load_ratings_csv(f);
  EXPECT_EQ(d.format, "csv");
  EXPECT_EQ(d.name, "my_ratings");
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"zoe", "bob"}));
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"The Matrix", "m2"}));
  EXPECT_EQ(d.ratings.indptr, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(d.ratings.indices, (std::vector<int32_t>{0, 1, 1}));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{4.5f, -1.0f, 2.0f}));
  EXPECT_EQ(d.rating_min, -1.0f);
  EXPECT_EQ(d.rating_max, 4.5f);
  EXPECT_FALSE(d.has_titles());
}

TEST_F(LoaderCsv, IntegerIdsWithoutHeaderAreSortedNumerically) {
  const std::string f = write("r.csv", "10,5,1.5\n2,7,4\n10,7,3\n");
  const Dataset d = vae::load_ratings_csv(f);
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"2", "10"}));
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"5", "7"}));
  EXPECT_EQ(d.ratings.indices, (std::vector<int32_t>{1, 0, 1}));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{4, 1.5f, 3}));
}

TEST_F(LoaderCsv, NonCanonicalIntegerIdsFallBackToFirstAppearance) {
  // "007" is not the integer 7 written plainly, so it stays a distinct string id.
  const std::string f = write("r.csv", "9,a,1\n007,a,2\n7,a,3\n");
  const Dataset d = vae::load_ratings_csv(f);
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"9", "007", "7"}));
}

TEST_F(LoaderCsv, ItemsFileGivesTitlesAndGenres) {
  const std::string f = write("r.csv", "u1,m1,4\nu2,m2,3\nu2,m1,5\n");
  const std::string items = write("items.csv",
                                  "item,title,genres\n"
                                  "m2,\"Second, The\",Drama|Comedy\n"
                                  "m1,First,Sci-Fi|Drama\n"
                                  "m3,Unrated,Western\n");
  const Dataset d = vae::load_ratings_csv(f, items);
  EXPECT_EQ(d.titles, (std::vector<std::string>{"First", "Second, The"}));
  // Unrated m3's "Western" is left out.
  EXPECT_EQ(d.genre_names, (std::vector<std::string>{"Drama", "Comedy", "Sci-Fi"}));
  EXPECT_EQ(d.item_genres, (std::vector<uint32_t>{(1u << 2) | 1u, 1u | (1u << 1)}));
}

TEST_F(LoaderCsv, LoadDatasetTakesFilesDirectoriesAndSynthetic) {
  const std::string f = write("r.csv", "1,1,4\n2,1,3\n");
  std::string note;
  const Dataset d = vae::load_dataset(f, &note);
  EXPECT_EQ(d.format, "csv");
  EXPECT_EQ(d.num_ratings(), 2);
  EXPECT_FALSE(note.empty());

  const Dataset s =
      vae::load_dataset("synthetic:users=30,items=20,ratings=200,groups=2,seed=5", &note);
  EXPECT_EQ(s.num_users(), 30);
  EXPECT_EQ(s.num_items(), 20);
  EXPECT_HAS(note, "synthetic");

  const std::string missing = path("nowhere");
  const std::string msg = data_error([&] { vae::load_dataset(missing); });
  EXPECT_HAS(msg, missing + ": no such file or directory");
}

// A header maps the columns by name, whatever their order; a rating lands at its own
// (user, item) cell.
TEST_F(LoaderCsv, HeaderNamesMapTheColumns) {
  const std::string f = write("sw.csv",
                              "item,user,rating\n"
                              "sku1,u1,5\n"
                              "sku2,u1,4\n"
                              "sku1,u2,3\n");
  std::string note = "unset";
  const Dataset d = vae::load_ratings_csv(f, "", &note);
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"u1", "u2"}));
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"sku1", "sku2"}));
  EXPECT_EQ(d.num_users(), 2);
  EXPECT_EQ(d.num_items(), 2);
  // u2 rated sku1 3: row 1, column 0.
  EXPECT_EQ(d.ratings.indptr, (std::vector<int64_t>{0, 2, 3}));
  EXPECT_EQ(d.ratings.indices, (std::vector<int32_t>{0, 1, 0}));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{5, 4, 3}));
  EXPECT_EQ(note, "note: " + f + ": columns by header: user=user, item=item, rating=rating");

  // The timestamp before the rating (and names in other spellings, extra columns ignored).
  const std::string g = write("ts.csv",
                              "User_ID, Movie-Id ,timestamp,comment,Rating\n"
                              "7,100,964982703,\"great, really\",4.5\n"
                              "7,200,964981247,meh,2\n"
                              "8,100,964982224,,1\n");
  const Dataset e = vae::load_ratings_csv(g, "", &note);
  EXPECT_EQ(e.user_ids, (std::vector<std::string>{"7", "8"}));
  EXPECT_EQ(e.item_ids, (std::vector<std::string>{"100", "200"}));
  EXPECT_EQ(e.ratings.values, (std::vector<float>{4.5f, 2, 1}));
  EXPECT_EQ(e.rating_min, 1.0f);
  EXPECT_EQ(e.rating_max, 4.5f);
  EXPECT_EQ(e.rating_column, "Rating");
  EXPECT_EQ(note, "note: " + g +
                      ": columns by header: user=User_ID, item=Movie-Id, rating=Rating, timestamp=timestamp; "
                      "ignored: 'comment'");
  // A line must reach the rating column.
  EXPECT_HAS(data_error([&] { vae::load_ratings_csv(write("short.csv", "user,item,time,rating\na,b,1,5\nc,d,2\n")); }),
             "short.csv:3: expected 4 fields (the columns of the header on line 1), found 3");

  // load_dataset passes the note on, after its "using" line.
  const Dataset h = vae::load_dataset(f, &note);
  EXPECT_EQ(h.num_users(), 2);
  EXPECT_EQ(note, "using sw (csv) from " + f + "\nnote: " + f + ": columns by header: user=user, item=item, rating=rating");
}

// The plain order says nothing, with or without a header (MovieLens' ratings.csv is one).
TEST_F(LoaderCsv, PlainOrderNeedsNoNote) {
  std::string note = "unset";
  vae::load_ratings_csv(write("a.csv", "userId,movieId,rating,timestamp\n1,1,4.0,0\n"), "", &note);
  EXPECT_EQ(note, "");
  note = "unset";
  vae::load_ratings_csv(write("b.csv", "1,1,4.0,0\n"), "", &note);
  EXPECT_EQ(note, "");
  const std::string c = write("c.csv", "user,item,rating\n1,1,4\n");
  vae::load_dataset(c, &note);
  EXPECT_EQ(note, "using c (csv) from " + c);
}

// Names it does not know keep the positional order, and the note says which column is which.
TEST_F(LoaderCsv, UnknownHeaderNamesAreReadByPosition) {
  std::string note;
  const std::string f = write("p.csv", "who,what,how much\nann,x,2\nbob,x,3\n");
  const Dataset d = vae::load_ratings_csv(f, "", &note);
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"ann", "bob"}));
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"x"}));
  EXPECT_EQ(d.ratings.values, (std::vector<float>{2, 3}));
  EXPECT_EQ(note, "note: " + f + ": header names 'who', 'what', 'how much' not recognised: columns taken in the "
                  "order user, item, rating[, timestamp] (user=who, item=what, rating=how much)");
  // Known names where the positional reading puts them anyway: the same, naming the others.
  const std::string g = write("q.csv", "user,song name,plays,when\nann,x,2,yesterday\n");
  const Dataset e = vae::load_ratings_csv(g, "", &note);
  EXPECT_EQ(e.user_ids, (std::vector<std::string>{"ann"}));
  EXPECT_EQ(e.ratings.values, (std::vector<float>{2}));
  EXPECT_EQ(e.rating_column, "");
  EXPECT_EQ(note, "note: " + g + ": header names 'song name', 'plays', 'when' not recognised: columns taken in the "
                  "order user, item, rating[, timestamp] (user=user, item=song name, rating=plays, timestamp=when)");
}

// Each rating keeps its time (for the temporal protocol), in CSR order: user 10's two lines
// come item 2 first in the file, item 1 first in the matrix.
// MovieLens counts seconds: a stamp that is no date in them (milliseconds, a corrupt field) is
// named with its line rather than read as a date thousands of years away.
TEST_F(LoaderMl100k, ImplausibleTimestampsAreNamedWithTheirLine) {
  try {
    vae::load_ml100k(make("1\t1\t5\t881250949\n2\t3\t4\t881250949000\n"));
    ADD_FAILURE() << "loaded";
  } catch (const vae::DataError& e) {
    EXPECT_HAS(std::string(e.what()), "u.data:2: timestamp 881250949000 is the date 29895-09-24 in seconds");
    EXPECT_HAS(std::string(e.what()), "in seconds since 1970, the unit of MovieLens stamps");
  }
}

TEST_F(LoaderMl100k, RatingTimesFollowTheirRatingsIntoCsrOrder) {
  const Dataset d = vae::load_ml100k(make());
  ASSERT_TRUE(d.has_times());
  EXPECT_EQ(d.rating_times, (std::vector<int64_t>{874965758, 876893171, 888550871, 881250950, 881250949}));
  EXPECT_EQ(d.no_times, "");
}

// A generic CSV's time column: integer seconds or ISO dates (UTC), each in its rating's place.
TEST_F(LoaderCsv, TimesAreSecondsOrIsoDates) {
  const Dataset d = vae::load_ratings_csv(write(
      "t.csv", "user,item,rating,date\na,y,4,2005-09-06T12:30:15Z\na,x,3,2000-02-29\nb,x,5,1969-12-31 23:00\n"
               "b,z,2,  1126009815 \n"));
  ASSERT_TRUE(d.has_times()) << d.no_times;
  // String ids keep their first appearance: a rated y (column 0), then x (1); b rated x, z.
  EXPECT_EQ(d.rating_times, (std::vector<int64_t>{1126009815, 951782400, -3600, 1126009815}));
}

// Stamps past the year 5000 in seconds count finer units: read as whole seconds, and said so.
TEST_F(LoaderCsv, MillisecondTimesAreReadAsSeconds) {
  std::string note;
  const Dataset ms = vae::load_ratings_csv(write("ms.csv", "a,x,4,1126009815123\nb,x,3,951782400999\n"), "", &note);
  EXPECT_EQ(ms.rating_times, (std::vector<int64_t>{1126009815, 951782400}));
  EXPECT_EQ(note, "note: " + path("ms.csv") + ": its timestamps count milliseconds since 1970 (read as whole seconds)");
  const Dataset ns = vae::load_ratings_csv(write("ns.csv", "a,x,4,1126009815123456789\n"), "", &note);
  EXPECT_EQ(ns.rating_times, (std::vector<int64_t>{1126009815}));
  EXPECT_HAS(note, "count nanoseconds");
  // Mixed units: the stamp that is not a date in the file's unit is named with its line.
  auto error = [&](const std::string& name, const std::string& text) {
    try {
      vae::load_ratings_csv(write(name, text), "", &note);
    } catch (const vae::DataError& e) {
      return std::string(e.what());
    }
    return std::string("loaded");
  };
  EXPECT_HAS(error("mixed.csv", "a,x,4,1126009815123\nb,x,3,951782400\n"),
             path("mixed.csv") + ":1: timestamp 1126009815123 is the date 37651-10-31 in seconds since 1970, the unit "
             "of the file's earliest stamp (951782400): every stamp must count the same unit");
  EXPECT_HAS(error("mixed_ms.csv", "user,item,rating,time\na,x,4,1126009815123\nb,x,3,951782400999\nc,x,3,"
                                   "951782400999000000\n"),
             path("mixed_ms.csv") + ":4: timestamp 951782400999000000 is the date ");
  EXPECT_HAS(error("mixed_ms.csv", "a,x,4,-9223372036854775808\nb,x,4,5\n"),
             ":1: timestamp -9223372036854775808 is no date in seconds since 1970");
  // utc_time and utc_date print what the loaders read.
  EXPECT_EQ(vae::utc_time(1126009815), "2005-09-06 12:30:15");
  EXPECT_EQ(vae::utc_time(951782400), "2000-02-29");
  EXPECT_EQ(vae::utc_time(-3600), "1969-12-31 23:00:00");
  EXPECT_EQ(vae::utc_date(1126009815), "2005-09-06");
  EXPECT_EQ(vae::utc_date(253402300800), "10000-01-01");
  EXPECT_EQ(vae::utc_time(INT64_MIN), "-9223372036854775808 s since 1970");
  EXPECT_EQ(vae::utc_time(-62167219200), "0000-01-01");
}

// Times the temporal protocol cannot use leave the data loadable; the reason names file and line.
TEST_F(LoaderCsv, UnreadableTimesAreGivenUpWithTheirReason) {
  auto reason = [&](const std::string& name, const std::string& text) {
    const Dataset d = vae::load_ratings_csv(write(name, text));
    EXPECT_FALSE(d.has_times()) << name;
    EXPECT_TRUE(d.rating_times.empty()) << name;
    return d.no_times;
  };
  std::string why = reason("word.csv", "a,x,4,1\nb,x,3,yesterday\nc,x,5,3\n");
  EXPECT_HAS(why, path("word.csv") + ":2: timestamp 'yesterday' is neither an integer");
  why = reason("feb30.csv", "a,x,4,2005-02-30\n");
  EXPECT_HAS(why, path("feb30.csv") + ":1: timestamp '2005-02-30'");
  why = reason("leap.csv", "a,x,4,1900-02-29\n");  // 1900 was no leap year
  EXPECT_HAS(why, ":1: timestamp '1900-02-29'");
  why = reason("short.csv", "a,x,4,5\nb,x,3\n");
  EXPECT_HAS(why, path("short.csv") + ":2: the line has no timestamp");
  why = reason("none.csv", "stars,user,item,plays\n4,a,x,5\n");  // mapped by name: no column is a time
  EXPECT_HAS(why, path("none.csv") + ": the header names no timestamp column");
  why = reason("three.csv", "a,x,4\n");
  EXPECT_HAS(why, path("three.csv") + ":1: the line has no timestamp");
}

// The temporal protocol alone reads the times: a date or any other text there is accepted, as is none.
TEST_F(LoaderCsv, TimestampColumnMayHoldDates) {
  const Dataset d = vae::load_ratings_csv(
      write("t.csv", "user,item,rating,date\na,x,4,2005-09-06\nb,x,3,\nc,x,5\n"));
  EXPECT_EQ(d.num_ratings(), 3);
  const Dataset e = vae::load_ratings_csv(write("t2.csv", "date,rating,item,user\n2005-09-06,4,x,a\n"));
  EXPECT_EQ(e.user_ids, (std::vector<std::string>{"a"}));
  EXPECT_EQ(e.ratings.values, (std::vector<float>{4}));
}

TEST_F(LoaderCsv, DefaultDataIsMl100kUnderWorkingDirectoryElseSynthetic) {
  const fs::path old = fs::current_path();
  struct Restore {
    fs::path p;
    ~Restore() { fs::current_path(p); }
  } restore{old};
  fs::current_path(root_);
  std::string note;
  const Dataset s = vae::load_dataset("", &note);
  EXPECT_EQ(s.num_users(), vae::SyntheticSpec{}.users);
  EXPECT_HAS(note, "synthetic");
  EXPECT_HAS(note, "fetch_movielens.sh");

  write("data/ml-100k/u.data", "1\t1\t5\t1\n");
  write("data/ml-100k/u.item", item_line("1", "Toy Story (1995)", {3}));
  const Dataset d = vae::load_dataset("", &note);
  EXPECT_EQ(note, "using data/ml-100k");
  EXPECT_EQ(d.format, "ml-100k");
  EXPECT_EQ(d.num_ratings(), 1);
}

// ---- bad input: every problem names the file and the line ---------------------------------

class LoaderErrors : public LoaderMl100k {};

TEST_F(LoaderErrors, MissingRatingsOrItemsFile) {
  fs::create_directories(path("empty"));
  std::string msg = data_error([&] { vae::load_movielens_dir(path("empty")); });
  EXPECT_HAS(msg, "no MovieLens ratings file");
  msg = data_error([&] { vae::load_ml100k(path("empty")); });
  EXPECT_HAS(msg, "u.data: no such file or directory");
  const std::string dir = make();
  fs::remove(dir + "/u.item");
  msg = data_error([&] { vae::load_ml100k(dir); });
  EXPECT_HAS(msg, "u.item: no such file or directory");
  msg = data_error([&] { vae::load_ratings_csv(path("nope.csv")); });
  EXPECT_HAS(msg, "nope.csv: no such file or directory");
}

TEST_F(LoaderErrors, EmptyFile) {
  std::string msg = data_error([&] { vae::load_ml100k(make("")); });
  EXPECT_HAS(msg, "u.data: empty file");
  msg = data_error([&] { vae::load_ratings_csv(write("e.csv", "\n\r\n")); });
  EXPECT_HAS(msg, "e.csv: empty file");
}

TEST_F(LoaderErrors, HeaderOnlyRatingsFile) {
  write("ml-latest/ratings.csv", "userId,movieId,rating,timestamp\n");
  write("ml-latest/movies.csv", "movieId,title,genres\n1,A,Drama\n");
  const std::string msg = data_error([&] { vae::load_mllatest(path("ml-latest")); });
  EXPECT_HAS(msg, "ratings.csv:1: no ratings in file (its only line was read as a header");
  // A one-line CSV whose rating field is not a number is that header: the message says so.
  EXPECT_HAS(data_error([&] { vae::load_ratings_csv(write("one.csv", "1,2,x,3\n")); }),
             "one.csv:1: no ratings in file (its only line was read as a header: its rating field is not a number)");
}

TEST_F(LoaderErrors, WrongColumnCount) {
  std::string msg =
      data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t1\t4\t1\n3\t1\t4\n")); });
  EXPECT_HAS(msg, "u.data:3:");
  EXPECT_HAS(msg, "expected 4 fields");
  msg = data_error([&] { vae::load_ratings_csv(write("r.csv", "a,b,1\na,c\n")); });
  EXPECT_HAS(msg, "r.csv:2:");
  write("ml-1m-bad/ratings.dat", "1::1::5::1\n1::2::5\n");
  write("ml-1m-bad/movies.dat", "1::A::Drama\n2::B::Drama\n");
  msg = data_error([&] { vae::load_ml1m(path("ml-1m-bad")); });
  EXPECT_HAS(msg, "ratings.dat:2:");
}

// A header that names columns must name a user, an item and a rating column, each once.
TEST_F(LoaderErrors, HeaderNamingColumnsWrongly) {
  std::string msg = data_error([&] { vae::load_ratings_csv(write("dup.csv", "userId,user_id,movieId,rating\n1,1,1,4\n")); });
  EXPECT_HAS(msg, "dup.csv:1: the header names the user column twice: 'userId' (column 1) and 'user_id' (column 2)");
  msg = data_error([&] { vae::load_ratings_csv(write("dup2.csv", "user,item,score,rating\na,b,1,4\n")); });
  EXPECT_HAS(msg, "dup2.csv:1: the header names the rating column twice: 'score' (column 3) and 'rating' (column 4)");
  // No rating column: a timestamp third is not read as the rating.
  msg = data_error([&] { vae::load_ratings_csv(write("nr.csv", "user,item,timestamp\na,b,964982703\n")); });
  EXPECT_HAS(msg, "nr.csv:1: the header names no rating column (it names user=user, item=item, timestamp=timestamp); "
                  "a rating column is called rating, score, stars, value, ratingvalue, overall, bookrating "
                  "(case, spaces, '_' and '-' ignored); a file without ratings is not read: add a rating column");
  // Two columns, user and item only (implicit feedback): the same refusal.
  msg = data_error([&] { vae::load_ratings_csv(write("two.csv", "user,item\na,b\n")); });
  EXPECT_HAS(msg, "two.csv:1: the header names no rating column (it names user=user, item=item)");
  // Known names out of the positional order, one missing: refused, naming what it found.
  msg = data_error([&] { vae::load_ratings_csv(write("ni.csv", "title,user,stars\nx,a,4\n")); });
  EXPECT_HAS(msg, "ni.csv:1: the header names no item column (it names user=user, rating=stars; not recognised: 'title'); "
                  "an item column is called item, itemid,");
  EXPECT_HAS(msg, "(case, spaces, '_' and '-' ignored)");
  EXPECT_EQ(msg.find("without ratings"), std::string::npos) << msg;
  // Five columns, none named: too many to take by position.
  msg = data_error([&] { vae::load_ratings_csv(write("five.csv", "a,b,c,d,e\nx,y,1,2,3\n")); });
  EXPECT_HAS(msg, "five.csv:1: expected 3 or 4 fields (user, item, rating[, timestamp]), found 5 (a header naming "
                  "its user, item and rating columns may have others)");
  // Five columns that name the needed ones: the others are ignored.
  const Dataset d = vae::load_ratings_csv(write("five2.csv", "reviewerID,asin,overall,summary,unixReviewTime\n"
                                                            "r1,B00,5,good,1400000000\n"));
  EXPECT_EQ(d.user_ids, (std::vector<std::string>{"r1"}));
  EXPECT_EQ(d.item_ids, (std::vector<std::string>{"B00"}));
}

TEST_F(LoaderErrors, LineNumbersCountBlankLines) {
  const std::string msg =
      data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n\n1\t2\t5\t1\n1\t3\t9\t1\n")); });
  EXPECT_HAS(msg, "u.data:4:");
}

TEST_F(LoaderErrors, TruncatedLastLine) {
  // A complete last line without '\n' is fine (see the CRLF test); an incomplete one is not.
  const std::string msg =
      data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t1\t4\t1\n3\t1")); });
  EXPECT_HAS(msg, "u.data:3:");
  EXPECT_HAS(msg, "found 2");
}

TEST_F(LoaderErrors, NonNumericFields) {
  std::string msg = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\nx\t1\t4\t1\n")); });
  EXPECT_HAS(msg, "u.data:2: non-numeric user id 'x'");
  msg = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t1\tfive\t1\n")); });
  EXPECT_HAS(msg, "u.data:2: non-numeric rating 'five'");
  msg = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t1\t4\tnoon\n")); });
  EXPECT_HAS(msg, "u.data:2: timestamp 'noon'");
  msg = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t1\t4\t99999999999999999999\n")); });
  EXPECT_HAS(msg, "u.data:2: timestamp '99999999999999999999' overflows a 64-bit integer");
  msg = data_error([&] { vae::load_ratings_csv(write("r.csv", "u,i,rating\na,b,1\nc,d,nan\n")); });
  EXPECT_HAS(msg, "r.csv:3: non-numeric rating 'nan'");
}

TEST_F(LoaderErrors, RatingOutsideTheScale) {
  std::string msg = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t1\t6\t1\n")); });
  EXPECT_HAS(msg, "u.data:2: rating '6'");
  msg = data_error([&] { vae::load_ml100k(make("1\t1\t3.5\t1\n")); });
  EXPECT_HAS(msg, "u.data:1: rating '3.5' is not a whole number");
  write("ml-1m-bad/ratings.dat", "1::1::5::1\n1::2::0::1\n");
  write("ml-1m-bad/movies.dat", "1::A::Drama\n2::B::Drama\n");
  write("ml-1m-bad/users.dat", "1::F::1::10::48067\n");
  msg = data_error([&] { vae::load_ml1m(path("ml-1m-bad")); });
  EXPECT_HAS(msg, "ratings.dat:2: rating '0'");
  for (const char* bad : {"5.5", "0.25", "0.0", "4.2"}) {
    write("latest/ratings.csv",
          std::string("userId,movieId,rating,timestamp\n1,1,4.0,1\n2,1,") + bad + ",1\n");
    write("latest/movies.csv", "movieId,title,genres\n1,A,Drama\n");
    msg = data_error([&] { vae::load_mllatest(path("latest")); });
    EXPECT_HAS(msg, std::string("ratings.csv:3: rating '") + bad + "'");
  }
}

TEST_F(LoaderErrors, UnknownGenreOrBadGenreFlags) {
  write("m1/ratings.dat", "1::1::5::1\n1::2::5::1\n");
  write("m1/movies.dat", "1::A (1990)::Drama\n2::B (1991)::Drama|Cartoon\n");
  std::string msg = data_error([&] { vae::load_ml1m(path("m1")); });
  EXPECT_HAS(msg, "movies.dat:2: unknown genre 'Cartoon'");

  msg = data_error([&] {
    vae::load_ml100k(
        make(kUData, item_line("1", "A", {}) + item_line("2", "B", {}) +
                         "3|C|01-Jan-1995||url|0|0|2|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0\n"));
  });
  EXPECT_HAS(msg, "u.item:3: genre flag 2");
  msg = data_error([&] {
    vae::load_ml100k(make(kUData, item_line("1", "A", {}) + item_line("2", "B", {}, 18)));
  });
  // No u.genre: the standard 19 genres set the count, and the message says so.
  EXPECT_HAS(msg, "u.item:2: 23 '|'-separated fields");
  EXPECT_HAS(msg, "expected 5 + 19 = 24 fields");
}

// A u.genre cut short sets fewer flag columns than u.item has: the message must blame the genre
// count from u.genre, not just say u.item has the wrong number of fields.
TEST_F(LoaderErrors, GenreFileShorterThanItemFlagsNamesUGenre) {
  const std::string dir = make();
  write("ml-100k/u.genre", "unknown|0\nAction|1\nAdventure|2\nAnimation|3\nChildren's|4\n\n");
  const std::string msg = data_error([&] { vae::load_ml100k(dir); });
  EXPECT_HAS(msg, "u.item:1: 24 '|'-separated fields");
  EXPECT_HAS(msg, "u.genre lists 5 genres");
  EXPECT_HAS(msg, "expected 5 + 5 = 10 fields");
  // With the matching count of flags the same short u.genre loads.
  std::string items;
  for (const char* id : {"1", "2", "3"}) items += item_line(id, "T", {1}, 5);
  write("ml-100k/u.item", items);
  const Dataset d = vae::load_ml100k(dir);
  EXPECT_EQ(d.genre_names.size(), 5u);
  // A genre name listed twice is u.genre's fault, named there.
  write("ml-100k/u.genre", "unknown|0\nAction|1\nAdventure|2\nAnimation|3\nAction|4\n");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(dir); }), "u.genre:5: genre name 'Action' repeated (first on line 2)");
}

TEST_F(LoaderErrors, DuplicateUserItemPairNamesBothLines) {
  const std::string msg =
      data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t1\t4\t1\n\n1\t1\t3\t9\n")); });
  EXPECT_HAS(msg, "u.data:4: duplicate rating for user 1 and item 1 (first given on line 1)");
  const std::string msg2 = data_error(
      [&] { vae::load_ratings_csv(write("d.csv", "user,item,rating\na,x,1\nb,x,2\na,x,3\n")); });
  EXPECT_HAS(msg2, "d.csv:4: duplicate rating for user a and item x (first given on line 2)");
}

TEST_F(LoaderErrors, InvalidUtf8WhereUtf8IsExpected) {
  write("latest/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n");
  write("latest/movies.csv", "movieId,title,genres\n2,Fine,Drama\n1,Bad \xff title,Drama\n");
  std::string msg = data_error([&] { vae::load_mllatest(path("latest")); });
  EXPECT_HAS(msg, "movies.csv:3: invalid UTF-8");
  msg = data_error([&] { vae::load_ratings_csv(write("u.csv", "a,b,1\n\xc3\x28,b,2\n")); });
  EXPECT_HAS(msg, "u.csv:2: invalid UTF-8");
}

TEST_F(LoaderErrors, IdsThatOverflow) {
  std::string msg =
      data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n99999999999999999999\t1\t4\t1\n")); });
  EXPECT_HAS(msg, "u.data:2: user id '99999999999999999999' overflows");
  msg = data_error([&] { vae::load_ratings_csv(write("o.csv", "a,-99999999999999999999,1\n")); });
  EXPECT_HAS(msg, "o.csv:1: item id");
  EXPECT_HAS(msg, "overflows");
}

TEST_F(LoaderErrors, RatedItemOrUserMissingFromMetadata) {
  std::string msg = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n2\t7\t4\t1\n")); });
  EXPECT_HAS(msg, "u.data:2: item 7 is not listed in u.item");
  msg = data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n5\t1\t4\t1\n")); });
  EXPECT_HAS(msg, "u.data:2: user 5 is not listed in u.user");

  write("latest/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n\n1,8,3.0,1\n");
  write("latest/movies.csv", "movieId,title,genres\n1,A,Drama\n");
  msg = data_error([&] { vae::load_mllatest(path("latest")); });
  EXPECT_HAS(msg, "ratings.csv:4: item 8 is not listed in movies.csv");

  write("m1/ratings.dat", "1::1::5::1\n3::1::5::1\n");
  write("m1/movies.dat", "1::A (1990)::Drama\n");
  write("m1/users.dat", "1::F::1::10::48067\n");
  msg = data_error([&] { vae::load_ml1m(path("m1")); });
  EXPECT_HAS(msg, "ratings.dat:2: user 3 is not listed in users.dat");

  const std::string f = write("r.csv", "u,a,1\nu,b,2\n");
  msg = data_error([&] { vae::load_ratings_csv(f, write("items.csv", "a,A\n")); });
  EXPECT_HAS(msg, "r.csv:2: item b is not listed in");
}

TEST_F(LoaderErrors, BadMetadataRows) {
  write("latest/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n");
  write("latest/movies.csv", "movieId,title,genres\n1,A,Drama\n1,B,Drama\n");
  std::string msg = data_error([&] { vae::load_mllatest(path("latest")); });
  EXPECT_HAS(msg, "movies.csv:3: duplicate movie id 1 (first on line 2)");
  write("latest/movies.csv", "movieId,title,genres\n1,\"Unclosed, title,Drama\n");
  msg = data_error([&] { vae::load_mllatest(path("latest")); });
  EXPECT_HAS(msg, "movies.csv:2: unterminated quoted field");

  write("m1/ratings.dat", "1::1::5::1\n");
  write("m1/movies.dat", "1::A (1990)::Drama\n");
  write("m1/users.dat", "1::F::1::21::48067\n");
  msg = data_error([&] { vae::load_ml1m(path("m1")); });
  EXPECT_HAS(msg, "users.dat:1: occupation code '21'");
  write("m1/users.dat", "1::X::1::2::48067\n");
  msg = data_error([&] { vae::load_ml1m(path("m1")); });
  EXPECT_HAS(msg, "users.dat:1: gender 'X'");

  const std::string dir = make();
  write("ml-100k/u.user", "1|24|M|technician|85711\n2|53|F|astronaut|94043\n");
  msg = data_error([&] { vae::load_ml100k(dir); });
  EXPECT_HAS(msg, "u.user:2: occupation 'astronaut' is not listed in u.occupation");
  // A number too large for any integer is out of range, not "non-numeric".
  write("ml-100k/u.user", "1|24|M|technician|85711\n2|99999999999999999999|F|writer|94043\n");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(dir); }), "u.user:2: age '99999999999999999999' is outside 0..200");
}

// The rarer metadata faults, each named by file and line: a rating no float holds, item ids
// that are not numbers or overflow, a repeated u.genre index or u.occupation name, too many
// genres, a movies.dat row of the wrong shape, and an items file (generic CSV) row of the
// wrong shape or repeating an id.
TEST_F(LoaderErrors, RarerMetadataFaults) {
  EXPECT_HAS(data_error([&] { vae::load_ratings_csv(write("big.csv", "u,i,4\nu,j,1e40\n")); }),
             "big.csv:2: rating '1e40' is out of range");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(make(kUData, default_uitem() + item_line("x5", "E", {1}))); }),
             "u.item:5: non-numeric item id 'x5'");
  EXPECT_HAS(data_error([&] {
               vae::load_ml100k(make(kUData, default_uitem() + item_line("99999999999999999999", "E", {1})));
             }),
             "u.item:5: item id '99999999999999999999' overflows a 64-bit integer");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(make(kUData, default_uitem() + item_line("3", "Again", {1}))); }),
             "u.item:5: duplicate item id 3 (first on line 3)");

  const std::string dir = make();
  const std::string genres = genre_file_100k();
  write("ml-100k/u.genre", genres.substr(0, genres.find('\n') + 1) + "Action|0\n" + genres.substr(genres.find('\n') + 1));
  EXPECT_HAS(data_error([&] { vae::load_ml100k(dir); }), "u.genre:2: genre index 0 repeated (first on line 1)");
  write("ml-100k/u.genre", genres);
  write("ml-100k/u.occupation", "administrator\nlawyer\nother\nlawyer\ntechnician\nwriter\n");
  EXPECT_HAS(data_error([&] { vae::load_ml100k(dir); }), "u.occupation:4: duplicate occupation 'lawyer'");

  std::string many = "movieId,title,genres\n1,A,";
  for (int g = 0; g < 33; ++g) many += (g ? "|" : "") + std::string("G") + std::to_string(g);
  write("latest/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n");
  write("latest/movies.csv", many + "\n");
  EXPECT_HAS(data_error([&] { vae::load_mllatest(path("latest")); }), "movies.csv:2: more than 32 distinct genres");

  write("m1/ratings.dat", "1::1::5::1\n");
  write("m1/movies.dat", "1::A (1990)\n");
  write("m1/users.dat", "1::F::1::10::48067\n");
  EXPECT_HAS(data_error([&] { vae::load_ml1m(path("m1")); }), "movies.dat:1: expected 3 fields ('::'-separated id, title, genres), found 2");

  const std::string r = write("r.csv", "u,a,1\nu,b,2\n");
  EXPECT_HAS(data_error([&] { vae::load_ratings_csv(r, write("items.csv", "a,A\nb\n")); }), "items.csv:2: expected 2 or 3 fields");
  EXPECT_HAS(data_error([&] { vae::load_ratings_csv(r, write("items.csv", "a,A\nb,B\na,C\n")); }),
             "items.csv:3: duplicate item id 'a' (first on line 1)");
}

// ---- fuzzing finds -------------------------------------------------------------------------

// A NUL byte in a field used to end the message right after the opening quote (what() is a C
// string). Control bytes are escaped so the message is complete and names the whole field.
TEST_F(LoaderErrors, ControlBytesInQuotedFieldsAreEscaped) {
  std::string udata = "1\t1\t5\t1\n2\t1";
  udata += '\0';
  udata += "x\t4\t1\n";
  // A NUL is no text at all: the file is refused where it holds one.
  const std::string msg = data_error([&] { vae::load_ml100k(make(udata)); });
  EXPECT_HAS(msg, "u.data:2: holds a NUL byte (byte 4 of the line): not a text file");
  std::string uitem = default_uitem();
  uitem.insert(uitem.find('\n') + 4, 1, '\0');  // into the second item's title
  EXPECT_HAS(data_error([&] { vae::load_ml100k(make(kUData, uitem)); }),
             "u.item:2: holds a NUL byte (byte 4 of the line): not a text file");
  // Other control bytes (here ESC and DEL) likewise.
  const std::string msg2 =
      data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\nu\x1b[31m\x7f\t1\t4\t1\n")); });
  EXPECT_HAS(msg2, "non-numeric user id 'u\\x1b[31m\\x7f'");
  // A very long field is cut and marked.
  const std::string longid(5000, 'z');
  const std::string msg3 =
      data_error([&] { vae::load_ml100k(make("1\t1\t5\t1\n" + longid + "\t1\t4\t1\n")); });
  EXPECT_HAS(msg3, "u.data:2: non-numeric user id 'zzzz");
  EXPECT_HAS(msg3, "\xe2\x80\xa6'");
  EXPECT_LT(msg3.size(), 300u) << msg3;
}

TEST(TextQuote, EscapesControlAndInvalidBytesKeepsUtf8AndCutsLongText) {
  using vae::text::escape;
  using vae::text::quote;
  EXPECT_EQ(quote(std::string("a\0b", 3)), "'a\\x00b'");
  EXPECT_EQ(quote("tab\there\r\n"), "'tab\\x09here\\x0d\\x0a'");
  EXPECT_EQ(quote("Am\xc3\xa9lie"), "'Am\xc3\xa9lie'");  // valid UTF-8 stays readable
  EXPECT_EQ(quote("caf\xe9"), "'caf\\xe9'");              // a Latin-1 byte is not UTF-8
  EXPECT_EQ(quote(std::string(60, 'x')), "'" + std::string(60, 'x') + "'");
  EXPECT_EQ(quote(std::string(61, 'x')), "'" + std::string(60, 'x') + "\xe2\x80\xa6'");
  // A cut never splits a UTF-8 character.
  std::string accents;
  for (int k = 0; k < 40; ++k) accents += "\xc3\xa9";
  const std::string q = quote(accents);
  EXPECT_EQ(vae::text::find_invalid_utf8(q), std::string::npos) << q;
  EXPECT_EQ(escape("abc", 2), "ab\xe2\x80\xa6");
  // In quotes (error messages) a field's invisible characters are shown: "20\u00a0" is not "20 ".
  EXPECT_EQ(quote("20\xc2\xa0"), "'20\\u{00a0}'");
  EXPECT_EQ(quote("\xe2\x80\x8b" "20"), "'\\u{200b}20'");
  EXPECT_EQ(quote("\xef\xbb\xbf" "1"), "'\\u{feff}1'");
  EXPECT_EQ(escape("20\xc2\xa0"), "20\xc2\xa0");  // a title shown in a table keeps its spaces
}

// MovieLens ids are positive integers. Zero or negative ids used to be accepted wherever no
// metadata file cross-checked them.
TEST_F(LoaderErrors, ZeroOrNegativeMovieLensIdsAreRefused) {
  // ml-100k without u.user: nothing else would notice a user id 0.
  std::string dir = make();
  fs::remove(dir + "/u.user");
  write("ml-100k/u.data", "1\t1\t5\t1\n0\t1\t4\t1\n");
  std::string msg = data_error([&] { vae::load_ml100k(dir); });
  EXPECT_HAS(msg, "u.data:2: user id '0' is not a positive integer");
  write("ml-100k/u.data", "1\t1\t5\t1\n-3\t1\t4\t1\n");
  msg = data_error([&] { vae::load_ml100k(dir); });
  EXPECT_HAS(msg, "u.data:2: user id '-3' is not a positive integer");
  write("ml-100k/u.data", "1\t1\t5\t1\n2\t-0\t4\t1\n");
  msg = data_error([&] { vae::load_ml100k(dir); });
  EXPECT_HAS(msg, "u.data:2: item id '-0' is not a positive integer");
  // u.item with a zero id.
  write("ml-100k/u.data", kUData);
  write("ml-100k/u.item", default_uitem() + item_line("0", "Zero", {1}));
  msg = data_error([&] { vae::load_ml100k(dir); });
  EXPECT_HAS(msg, "u.item:5: item id '0' is not a positive integer");

  // ml-latest: ratings.csv user and movie ids, movies.csv movie ids.
  write("latest/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n0,1,3.0,1\n");
  write("latest/movies.csv", "movieId,title,genres\n1,A,Drama\n");
  msg = data_error([&] { vae::load_mllatest(path("latest")); });
  EXPECT_HAS(msg, "ratings.csv:3: user id '0' is not a positive integer");
  write("latest/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n2,-7,3.0,1\n");
  msg = data_error([&] { vae::load_mllatest(path("latest")); });
  EXPECT_HAS(msg, "ratings.csv:3: item id '-7' is not a positive integer");
  write("latest/ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n");
  write("latest/movies.csv", "movieId,title,genres\n1,A,Drama\n-2,B,Drama\n");
  msg = data_error([&] { vae::load_mllatest(path("latest")); });
  EXPECT_HAS(msg, "movies.csv:3: movie id '-2' is not a positive integer");

  // ml-1m.
  write("m1/ratings.dat", "1::1::5::1\n0::1::5::1\n");
  write("m1/movies.dat", "1::A (1990)::Drama\n");
  write("m1/users.dat", "1::F::1::10::48067\n0::F::1::10::48067\n");
  msg = data_error([&] { vae::load_ml1m(path("m1")); });
  EXPECT_HAS(msg, "ratings.dat:2: user id '0' is not a positive integer");

  // Generic CSV ids are free text: 0 and -1 stay ordinary ids there.
  const Dataset csv = vae::load_ratings_csv(write("ok.csv", "0,-1,3\n1,2,4\n"));
  EXPECT_EQ(csv.num_users(), 2);
}

TEST_F(LoaderMlLatest, LeadingZerosInIdsAreStillAccepted) {
  const Dataset d = vae::load_mllatest(
      make("userId,movieId,rating,timestamp\n007,001,4.0,1\n7,5,3.0,1\n",
           "movieId,title,genres\n1,A (1990),Drama\n05,B (1991),Comedy\n"));
  EXPECT_EQ(d.num_users(), 1);  // "007" and "7" are the same user
  EXPECT_EQ(d.num_items(), 2);
  EXPECT_EQ(d.num_ratings(), 2);
  EXPECT_EQ(d.titles[1], "B (1991)");
}

// Process substitution (--data <(cat ratings.csv)) hands over a pipe; /proc files report size
// 0. Both used to read as "empty file".
TEST_F(LoaderCsv, ReadsFromANamedPipe) {
  const std::string fifo = path("ratings.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string content = "user,item,rating\na,x,4\nb,x,2\nb,y,5\n";
  std::thread writer([&] {
    const int fd = open(fifo.c_str(), O_WRONLY);
    if (fd < 0) return;
    size_t off = 0;
    while (off < content.size()) {
      const ssize_t n = ::write(fd, content.data() + off, content.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    close(fd);
  });
  std::string error;
  Dataset d;
  try {
    d = vae::load_dataset(fifo);
  } catch (const std::exception& e) {
    error = e.what();
  }
  // Unblocks the writer if the loader never opened the pipe.
  const int unblock = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  writer.join();
  if (unblock >= 0) close(unblock);
  ASSERT_EQ(error, "");
  EXPECT_EQ(d.num_users(), 2);
  EXPECT_EQ(d.num_items(), 2);
  EXPECT_EQ(d.num_ratings(), 3);
}

TEST_F(LoaderCsv, NonRegularFilesAreReadNotCalledEmpty) {
  // /proc/self/status is a "regular" file of size 0 with content.
  ASSERT_TRUE(fs::exists("/proc/self/status"));
  const std::string text = vae::text::read_file("/proc/self/status");
  EXPECT_NE(text.find("Name:"), std::string::npos);
  const std::string msg = data_error([&] { vae::load_ratings_csv("/proc/self/status"); });
  EXPECT_EQ(msg.find("empty file"), std::string::npos) << msg;
  EXPECT_HAS(msg, "/proc/self/status:1:");
  // A pipe that really is empty is still an empty file.
  const std::string fifo = path("empty.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    const int fd = open(fifo.c_str(), O_WRONLY);
    if (fd >= 0) close(fd);
  });
  const std::string msg2 = data_error([&] { vae::load_ratings_csv(fifo); });
  const int unblock = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  writer.join();
  if (unblock >= 0) close(unblock);
  EXPECT_HAS(msg2, "empty.fifo: empty file");
}

}  // namespace

// An optional file that is a link to nothing is refused, not taken as absent: a broken users.dat
// used to turn ml-1m into ml-10m (half-star scale, no user attributes) without a word.
TEST_F(LoaderMl1m, ALinkToAMissingOptionalFileIsRefused) {
  const std::string dir = make();
  fs::remove(dir + "/users.dat");
  fs::create_symlink(dir + "/gone.dat", dir + "/users.dat");
  std::string msg = data_error([&] { vae::load_movielens_dir(dir); });
  EXPECT_HAS(msg, "users.dat");
  EXPECT_HAS(msg, "is a link to a missing file");
  fs::remove(dir + "/users.dat");  // really absent: ml-10m's half-star scale, as before
  EXPECT_EQ(vae::load_movielens_dir(dir).rating_min, 0.5f);
}

TEST_F(LoaderErrors, ALinkToAMissingUUserOrGenreFileIsRefused) {
  for (const char* f : {"u.user", "u.genre", "u.occupation", "u.item"}) {  // u.item: required, read directly
    const std::string dir = make();
    fs::remove(dir + "/" + f);
    fs::create_symlink(dir + "/nowhere", dir + "/" + f);
    const std::string msg = data_error([&] { vae::load_movielens_dir(dir); });
    EXPECT_HAS(msg, std::string(f) + ": is a link to a missing file");
    fs::remove(dir + "/" + f);  // the next make() would write through the link
  }
}

// ml-latest's ratings.csv is read by position: a header with its columns in another order used
// to load with users and movies swapped (or fail on a movie "missing" from movies.csv).
TEST_F(LoaderMlLatest, AHeaderWithItsColumnsInAnotherOrderIsRefused) {
  std::string msg = data_error([&] {
    vae::load_movielens_dir(make("movieId,userId,rating,timestamp\n1,1,4.0,1\n11,2,3.0,2\n"));
  });
  EXPECT_HAS(msg, "ratings.csv:1: header 'movieId,userId,rating,timestamp' is not ml-latest's "
                  "userId,movieId,rating,timestamp in that order");
  EXPECT_HAS(msg, "--data ");
  msg = data_error([&] { vae::load_movielens_dir(make("a,b,c,d\n1,1,4.0,1\n")); });
  EXPECT_HAS(msg, "ratings.csv:1: header 'a,b,c,d' is not ml-latest's");
  // Names differing only in case or separators are the same columns.
  EXPECT_EQ(vae::load_movielens_dir(make("UserId,movie_id,Rating,timestamp\n1,1,4.0,1\n")).num_ratings(), 1);
}

// A nonzero rating that a float holds as 0 would read as "not rated" in a generic CSV.
TEST_F(LoaderCsv, ARatingTooSmallForAFloatIsRefused) {
  const std::string msg = data_error([&] { vae::load_ratings_csv(write("tiny.csv", "a,x,4\nb,x,1e-300\n")); });
  EXPECT_HAS(msg, "tiny.csv:2: rating '1e-300' is too close to 0 for a float");
  EXPECT_EQ(vae::load_ratings_csv(write("zero.csv", "a,x,4\nb,x,0\n")).num_ratings(), 2);
}

// A stream with NUL bytes (--data /dev/zero would be one without end) is refused as it is read,
// before it fills memory.
TEST_F(LoaderCsv, AStreamHoldingNulBytesIsRefusedAsItIsRead) {
  const std::string fifo = path("nul.fifo");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const std::string content = "user,item,rating\n" + std::string(1000, '\0');  // fits a pipe's buffer
  std::thread writer([&] {
    const int fd = open(fifo.c_str(), O_WRONLY);
    if (fd < 0) return;
    if (::write(fd, content.data(), content.size()) < 0) {
    }
    close(fd);
  });
  const std::string msg = data_error([&] { vae::load_ratings_csv(fifo); });
  const int unblock = open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  writer.join();
  if (unblock >= 0) close(unblock);
  EXPECT_HAS(msg, "nul.fifo:2: holds a NUL byte (byte 1 of the line): not a text file");
}

// A folder the user may not look into is not "a folder without a ratings file". Root reads
// everything, so the check runs in a child that drops to an unprivileged user (skipped where
// it may not: a container's root without CAP_SETUID).
TEST_F(LoaderErrors, AFolderThatCannotBeSearchedSaysSo) {
  const std::string dir = make();
  ASSERT_EQ(chmod(dir.c_str(), 0), 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    std::string msg = "(no DataError)";
    try {
      vae::load_movielens_dir(dir);
    } catch (const DataError& e) {
      msg = e.what();
    }
    if (::write(fds[1], msg.data(), msg.size()) < 0) _exit(4);
    _exit(0);
  }
  close(fds[1]);
  std::string msg;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) msg.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  chmod(dir.c_str(), 0755);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "cannot drop root privileges here";
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_HAS(msg, "u.data: cannot be looked up: Permission denied");
}
