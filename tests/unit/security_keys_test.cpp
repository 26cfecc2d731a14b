// SPDX-License-Identifier: Apache-2.0
// CURVE keys and key lists (include/scale0/security.hpp, docs/security.md): Z85, CZMQ's zcert
// format, key-list lines, service globs.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "scale0/error.hpp"
#include "scale0/security.hpp"

namespace scale0::security {
namespace {

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "scale0-keys-" + std::to_string(::getpid()) + "-" + name;
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST(security_keys, generated_pairs_are_z85_and_belong_together) {
  const keypair a = generate_keypair();
  const keypair b = generate_keypair();
  EXPECT_TRUE(valid_z85_key(a.public_key));
  EXPECT_TRUE(valid_z85_key(a.secret_key));
  EXPECT_NE(a.public_key, b.public_key);
  EXPECT_EQ(public_for_secret(a.secret_key), a.public_key);
  EXPECT_FALSE(valid_z85_key(a.public_key.substr(1)));
  EXPECT_FALSE(valid_z85_key(a.public_key + "x"));
  EXPECT_FALSE(valid_z85_key(std::string(40, ' ')));
}

TEST(security_keys, saved_certificates_load_and_the_secret_one_is_private) {
  const keypair k = generate_keypair();
  const std::string name = temp_path("cert");
  save_certificate(name, k);
  const keypair pub = load_certificate(name);
  EXPECT_EQ(pub.public_key, k.public_key);
  EXPECT_EQ(pub.secret_key, "");
  const keypair sec = load_certificate(name + "_secret");
  EXPECT_EQ(sec.public_key, k.public_key);
  EXPECT_EQ(sec.secret_key, k.secret_key);
  struct stat st {};
  ASSERT_EQ(::stat((name + "_secret").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  std::ifstream in(name);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text.find(k.secret_key), std::string::npos) << "no secret in the public file";
  EXPECT_EQ(public_key_from(name), k.public_key) << "a certificate path names its public key";
  EXPECT_EQ(public_key_from(k.public_key), k.public_key);
  // An existing pair is not replaced unless asked: the old secret stays.
  const keypair other = generate_keypair();
  EXPECT_THROW(save_certificate(name, other), error);
  EXPECT_EQ(load_certificate(name + "_secret").secret_key, k.secret_key);
  save_certificate(name, other, true);
  EXPECT_EQ(load_certificate(name + "_secret").secret_key, other.secret_key);
  std::remove(name.c_str());
  std::remove((name + "_secret").c_str());
}

TEST(security_keys, keys_are_whole_z85) {
  const keypair k = generate_keypair();
  EXPECT_TRUE(valid_z85_key(k.public_key));
  std::string cut = k.public_key;
  cut[5] = '\0';  // libzmq's decoder would stop here
  EXPECT_FALSE(valid_z85_key(cut));
  cut[5] = ' ';
  EXPECT_FALSE(valid_z85_key(cut));
}

TEST(security_keys, czmq_certificates_load_as_they_are) {
  const keypair k = generate_keypair();
  const std::string path = temp_path("czmq_secret");
  write(path,
        "#   ****  Generated on 2016-04-01 10:00:00 by CZMQ  ****\n"
        "#   ZeroMQ CURVE **Secret** Certificate\n"
        "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n"
        "metadata\n"
        "    name = \"worker one\"\n"
        "    email = 'ops@example.com'\n"
        "curve\n"
        "    public-key = \"" +
            k.public_key + "\"\n    secret-key = \"" + k.secret_key + "\"\n");
  const keypair loaded = load_certificate(path);
  EXPECT_EQ(loaded.public_key, k.public_key);
  EXPECT_EQ(loaded.secret_key, k.secret_key);
  std::remove(path.c_str());
}

TEST(security_keys, broken_certificates_are_refused_with_the_file_name) {
  const keypair k = generate_keypair();
  const keypair other = generate_keypair();
  const std::string path = temp_path("bad");
  for (const std::string& text :
       {std::string("metadata\n"), std::string("curve\n    public-key = \"short\"\n"),
        "curve\n    public-key = \"" + other.public_key + "\"\n    secret-key = \"" + k.secret_key +
            "\"\n"}) {
    write(path, text);
    try {
      (void)load_certificate(path);
      ADD_FAILURE() << "loaded: " << text;
    } catch (const error& e) {
      EXPECT_NE(e.message().find(path), std::string::npos) << e.message();
    }
  }
  std::remove(path.c_str());
  EXPECT_THROW((void)public_key_from("/nonexistent/scale0/key"), error);
}

TEST(security_keys, key_lists_skip_comments_and_keep_globs) {
  const keypair a = generate_keypair();
  const keypair b = generate_keypair();
  const auto list = parse_key_list("# workers\n\n   # indented comment\n" + a.public_key +
                                       " www.example.com,api.*\n" + b.public_key + "\treports\r\n",
                                   "workers");
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].key, a.public_key);
  EXPECT_EQ(list[0].globs, (std::vector<std::string>{"www.example.com", "api.*"}));
  EXPECT_EQ(list[1].globs, (std::vector<std::string>{"reports"}));
}

// '#' starts a comment and is a Z85 character: a key holds it often, but never first (a group's
// first character encodes at most (2^32 - 1) / 85^4 = 82, and '#' is character 84).
TEST(security_keys, keys_with_hash_are_listed_and_never_start_with_it) {
  static_assert(0xffffffffull / (85ull * 85 * 85 * 85) == 82);
  keypair k = generate_keypair();
  for (int i = 0; i < 10000 && k.public_key.find('#') == std::string::npos; ++i)
    k = generate_keypair();
  ASSERT_NE(k.public_key.find('#'), std::string::npos);
  EXPECT_NE(k.public_key.front(), '#');
  const auto list = parse_key_list("# a comment\n" + k.public_key + " svc\n", "keys");
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].key, k.public_key);
}

TEST(security_keys, bad_key_list_lines_name_the_line) {
  const keypair a = generate_keypair();
  for (const std::string& text : {std::string("notakey svc\n"), a.public_key + "\n",
                                  a.public_key + " a, b c\n", "#ok\n" + a.public_key + " ,\n"}) {
    try {
      (void)parse_key_list(text, "keys");
      ADD_FAILURE() << "parsed: " << text;
    } catch (const error& e) {
      EXPECT_NE(e.message().find("keys:"), std::string::npos) << e.message();
    }
  }
}

TEST(security_keys, admin_key_lists_hold_keys_alone) {
  const keypair a = generate_keypair();
  const keypair b = generate_keypair();
  const auto keys =
      parse_key_names("# admins\n  " + a.public_key + "  \n\n" + b.public_key + "\n", "admins");
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_EQ(keys[0], a.public_key);
  EXPECT_EQ(keys[1], b.public_key);
  for (const std::string& text :
       {a.public_key + " svc\n", std::string("short\n"), "#x\n" + a.public_key.substr(1) + "\n"}) {
    try {
      (void)parse_key_names(text, "admins");
      ADD_FAILURE() << "parsed: " << text;
    } catch (const error& e) {
      EXPECT_NE(e.message().find("admins:"), std::string::npos) << e.message();
    }
  }
}

TEST(security_keys, globs) {
  EXPECT_TRUE(glob_match("*", "anything.at.all"));
  EXPECT_TRUE(glob_match("api.*", "api.v1"));
  EXPECT_FALSE(glob_match("api.*", "apix"));
  EXPECT_TRUE(glob_match("*.example.com", "www.example.com"));
  EXPECT_FALSE(glob_match("*.example.com", "example.com"));
  EXPECT_TRUE(glob_match("w?b", "web"));
  EXPECT_FALSE(glob_match("w?b", "wb"));
  EXPECT_TRUE(glob_match("exact", "exact"));
  EXPECT_FALSE(glob_match("exact", "exactly"));
  EXPECT_TRUE(glob_match("a*b*c", "a-x-b-y-c"));
  EXPECT_FALSE(glob_match("a*b*c", "a-x-b-y"));
  EXPECT_TRUE(glob_match(std::string(40, '*') + "x", std::string(10000, 'a') + "x"));
}

TEST(security_keys, client_settings_from_flags) {
  const std::string name = temp_path("client");
  const keypair server = generate_keypair();
  const keypair mine = generate_keypair();
  save_certificate(name, mine);
  const curve_client c = curve_client_from(server.public_key, name + "_secret");
  EXPECT_EQ(c.server_key, server.public_key);
  EXPECT_EQ(c.public_key, mine.public_key);
  EXPECT_EQ(c.secret_key, mine.secret_key);
  EXPECT_TRUE(curve_client_from(server.public_key, "").secret_key.empty()) << "ephemeral";
  EXPECT_FALSE(curve_client_from("", "").enabled());
  EXPECT_THROW((void)curve_client_from("", name + "_secret"), error);
  EXPECT_THROW((void)curve_client_from(server.public_key, name), error) << "a public certificate";
  std::remove(name.c_str());
  std::remove((name + "_secret").c_str());
}

}  // namespace
}  // namespace scale0::security
