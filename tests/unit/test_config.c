/* test_config.c - defaults, environment and flags, validation messages, --help and --version. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srv.h"

/* A fake environment, so tests never depend on (or change) the real one. */
static const char *fake_env[16][2];
static size_t n_fake_env;

static const char *fake_getenv(const char *name)
{
    for (size_t i = 0; i < n_fake_env; i++)
        if (strcmp(fake_env[i][0], name) == 0)
            return fake_env[i][1];
    return NULL;
}

static void env_set(const char *name, const char *value)
{
    ck_assert_uint_lt(n_fake_env, 16);
    fake_env[n_fake_env][0] = name;
    fake_env[n_fake_env][1] = value;
    n_fake_env++;
}

static srv_config cfg;
static char out[8192];
static char err[512];

static void setup(void)
{
    n_fake_env = 0;
    srv_config_defaults(&cfg);
    out[0] = err[0] = '\0';
}

/* Parses a NULL-terminated flag list (argv[0] is added). */
static srv_cli_action parse_v(const char *const *flags)
{
    char *argv[32];
    int argc = 0;

    argv[argc++] = (char *)"attention-server";
    for (size_t i = 0; flags[i] != NULL; i++) {
        ck_assert_int_lt(argc, 31);
        argv[argc++] = (char *)flags[i];
    }
    argv[argc] = NULL;
    return srv_config_parse(&cfg, argc, argv, fake_getenv, out, sizeof out, err, sizeof err);
}

#define PARSE(...) parse_v((const char *const[]){__VA_ARGS__, NULL})
#define PARSE_NONE() parse_v((const char *const[]){NULL})

/* The flag and its value must both be named, on one line. */
static void assert_error_names(srv_cli_action a, const char *name, const char *value)
{
    ck_assert_int_eq(a, SRV_CLI_ERROR);
    ck_assert_msg(strstr(err, name) != NULL, "error '%s' does not name '%s'", err, name);
    if (value != NULL)
        ck_assert_msg(strstr(err, value) != NULL, "error '%s' does not quote '%s'", err, value);
    ck_assert_msg(strchr(err, '\n') == NULL, "error is not one line: '%s'", err);
}

START_TEST(defaults_match_the_documentation)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    ck_assert_int_eq(PARSE_NONE(), SRV_CLI_RUN);
    ck_assert_str_eq(cfg.host, "127.0.0.1");
    ck_assert_uint_eq(cfg.port, 8080);
    ck_assert_uint_eq(cfg.threads, cores < 1 ? 1 : (cores > 256 ? 256 : (unsigned)cores));
    ck_assert_int_eq(cfg.blas_threads, 1);
    ck_assert_uint_eq(cfg.max_body_bytes, 67108864u);
    ck_assert_uint_eq(cfg.max_elements, 67108864u);
    ck_assert_uint_eq(cfg.timeout_s, 30);
    ck_assert_uint_eq(cfg.drain_s, 10);
    ck_assert(!cfg.quiet);
}
END_TEST

START_TEST(env_sets_every_option)
{
    env_set("ATTN_HOST", "0.0.0.0");
    env_set("ATTN_PORT", "9000");
    env_set("ATTN_THREADS", "3");
    env_set("ATTN_BLAS_THREADS", "2");
    env_set("ATTN_MAX_BODY_BYTES", "1M");
    env_set("ATTN_MAX_ELEMENTS", "4096");
    env_set("ATTN_TIMEOUT", "5");
    env_set("ATTN_DRAIN_TIMEOUT", "7");
    env_set("ATTN_QUIET", "true");
    ck_assert_int_eq(PARSE_NONE(), SRV_CLI_RUN);
    ck_assert_str_eq(cfg.host, "0.0.0.0");
    ck_assert_uint_eq(cfg.port, 9000);
    ck_assert_uint_eq(cfg.threads, 3);
    ck_assert_int_eq(cfg.blas_threads, 2);
    ck_assert_uint_eq(cfg.max_body_bytes, 1u << 20);
    ck_assert_uint_eq(cfg.max_elements, 4096);
    ck_assert_uint_eq(cfg.timeout_s, 5);
    ck_assert_uint_eq(cfg.drain_s, 7);
    ck_assert(cfg.quiet);
}
END_TEST

START_TEST(flags_win_over_env)
{
    env_set("ATTN_PORT", "9000");
    env_set("ATTN_THREADS", "3");
    env_set("ATTN_QUIET", "1");
    ck_assert_int_eq(PARSE("--port", "9100", "--quiet=false"), SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.port, 9100);
    ck_assert_uint_eq(cfg.threads, 3); /* env kept where no flag says otherwise */
    ck_assert(!cfg.quiet);
}
END_TEST

START_TEST(empty_env_counts_as_unset)
{
    env_set("ATTN_PORT", "");
    ck_assert_int_eq(PARSE_NONE(), SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.port, 8080);
}
END_TEST

START_TEST(both_flag_forms)
{
    ck_assert_int_eq(PARSE("--port", "9000", "--threads=4", "--host=::1", "--timeout", "60",
                           "--drain-timeout=2", "--blas-threads", "8", "--max-elements=2K",
                           "--max-body-bytes", "3M", "--quiet"),
                     SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.port, 9000);
    ck_assert_uint_eq(cfg.threads, 4);
    ck_assert_str_eq(cfg.host, "::1");
    ck_assert_uint_eq(cfg.timeout_s, 60);
    ck_assert_uint_eq(cfg.drain_s, 2);
    ck_assert_int_eq(cfg.blas_threads, 8);
    ck_assert_uint_eq(cfg.max_elements, 2048);
    ck_assert_uint_eq(cfg.max_body_bytes, 3u << 20);
    ck_assert(cfg.quiet);
}
END_TEST

START_TEST(later_flag_wins)
{
    ck_assert_int_eq(PARSE("--port=1", "--port", "2"), SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.port, 2);
}
END_TEST

START_TEST(port_zero_and_bounds_accepted)
{
    ck_assert_int_eq(PARSE("--port", "0"), SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.port, 0);
    ck_assert_int_eq(PARSE("--port", "65535", "--threads", "1", "--blas-threads", "64", "--timeout",
                           "3600", "--drain-timeout", "1"),
                     SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.port, 65535);
    ck_assert_uint_eq(cfg.threads, 1);
    ck_assert_int_eq(cfg.blas_threads, 64);
    ck_assert_uint_eq(cfg.timeout_s, 3600);
    ck_assert_int_eq(PARSE("--threads", "256"), SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.threads, 256);
}
END_TEST

START_TEST(size_suffixes_are_binary)
{
    static const struct {
        const char *text;
        size_t want;
    } cases[] = {
        {"1", 1},
        {"1000", 1000},
        {"1K", 1024},
        {"1k", 1024},
        {"64M", (size_t)64 << 20},
        {"3m", (size_t)3 << 20},
        {"2G", (size_t)2 << 30},
        {"1g", (size_t)1 << 30},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup();
        ck_assert_int_eq(PARSE("--max-body-bytes", cases[i].text), SRV_CLI_RUN);
        ck_assert_uint_eq(cfg.max_body_bytes, cases[i].want);
        ck_assert_int_eq(PARSE("--max-elements", cases[i].text), SRV_CLI_RUN);
        ck_assert_uint_eq(cfg.max_elements, cases[i].want);
    }
}
END_TEST

START_TEST(bad_sizes_rejected)
{
    static const char *const bad[] = {"0",           "0K",  "-1",   "1T",
                                      "K",           "1KB", " 1",   "1 ",
                                      "1.5M",        "",    "0x10", "99999999999999999999",
                                      "17179869184G"};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setup();
        assert_error_names(PARSE("--max-body-bytes", bad[i]), "--max-body-bytes", bad[i]);
        setup();
        assert_error_names(PARSE("--max-elements", bad[i]), "--max-elements", bad[i]);
    }
}
END_TEST

START_TEST(out_of_range_numbers_rejected)
{
    static const struct {
        const char *flag, *value;
    } cases[] = {
        {"--port", "65536"},
        {"--port", "-1"},
        {"--port", "abc"},
        {"--port", "80x"},
        {"--port", ""},
        {"--port", "+80"},
        {"--threads", "0"},
        {"--threads", "257"},
        {"--blas-threads", "0"},
        {"--blas-threads", "65"},
        {"--timeout", "0"},
        {"--timeout", "3601"},
        {"--drain-timeout", "0"},
        {"--drain-timeout", "3601"},
        {"--port", "99999999999999999999999"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup();
        assert_error_names(PARSE(cases[i].flag, cases[i].value), cases[i].flag, cases[i].value);
    }
}
END_TEST

START_TEST(env_errors_name_the_variable)
{
    env_set("ATTN_THREADS", "lots");
    assert_error_names(PARSE_NONE(), "ATTN_THREADS", "lots");
    setup();
    env_set("ATTN_MAX_BODY_BYTES", "0");
    assert_error_names(PARSE_NONE(), "ATTN_MAX_BODY_BYTES", "'0'");
    setup();
    env_set("ATTN_QUIET", "maybe");
    assert_error_names(PARSE_NONE(), "ATTN_QUIET", "maybe");
    setup();
    env_set("ATTN_HOST", "example.com");
    assert_error_names(PARSE_NONE(), "ATTN_HOST", "example.com");
}
END_TEST

START_TEST(hosts_literal_or_localhost)
{
    ck_assert_int_eq(PARSE("--host", "localhost"), SRV_CLI_RUN);
    ck_assert_str_eq(cfg.host, "localhost");
    ck_assert_int_eq(PARSE("--host", "[::1]"), SRV_CLI_RUN);
    ck_assert_str_eq(cfg.host, "::1");
    ck_assert_int_eq(PARSE("--host", "::"), SRV_CLI_RUN);
    ck_assert_str_eq(cfg.host, "::");
    ck_assert_int_eq(PARSE("--host", "10.1.2.3"), SRV_CLI_RUN);
    ck_assert_str_eq(cfg.host, "10.1.2.3");
    assert_error_names(PARSE("--host", "example.com"), "--host", "example.com");
    assert_error_names(PARSE("--host", "1.2.3.256"), "--host", "1.2.3.256");
    assert_error_names(PARSE("--host", ""), "--host", NULL);
}
END_TEST

START_TEST(quiet_switch_forms)
{
    ck_assert_int_eq(PARSE("--quiet"), SRV_CLI_RUN);
    ck_assert(cfg.quiet);
    ck_assert_int_eq(PARSE("--quiet=off"), SRV_CLI_RUN);
    ck_assert(!cfg.quiet);
    ck_assert_int_eq(PARSE("--quiet=YES"), SRV_CLI_RUN);
    ck_assert(cfg.quiet);
    assert_error_names(PARSE("--quiet=maybe"), "--quiet", "maybe");
}
END_TEST

START_TEST(unknown_flags_and_arguments_rejected)
{
    assert_error_names(PARSE("--prot", "80"), "--prot", NULL);
    assert_error_names(PARSE("-p", "80"), "-p", NULL);
    assert_error_names(PARSE("serve"), "serve", NULL);
    assert_error_names(PARSE("--"), "--", NULL);
    assert_error_names(PARSE("--port"), "--port", "missing");
    assert_error_names(PARSE("--help=1"), "--help", NULL);
}
END_TEST

START_TEST(help_lists_every_flag_env_and_default)
{
    static const char *const want[] = {
        "--host",
        "ATTN_HOST",
        "127.0.0.1",
        "--port",
        "ATTN_PORT",
        "8080",
        "--threads",
        "ATTN_THREADS",
        "--blas-threads",
        "ATTN_BLAS_THREADS",
        "--max-body-bytes",
        "ATTN_MAX_BODY_BYTES",
        "67108864",
        "--max-elements",
        "ATTN_MAX_ELEMENTS",
        "--timeout",
        "ATTN_TIMEOUT",
        "30",
        "--drain-timeout",
        "ATTN_DRAIN_TIMEOUT",
        "--quiet",
        "ATTN_QUIET",
        "--help",
        "--version",
    };

    ck_assert_int_eq(PARSE("--help"), SRV_CLI_EXIT);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        ck_assert_msg(strstr(out, want[i]) != NULL, "--help lacks '%s'", want[i]);
    ck_assert_str_eq(err, "");
}
END_TEST

START_TEST(operations_flags_and_their_env)
{
    ck_assert_int_eq(PARSE_NONE(), SRV_CLI_RUN);
    ck_assert_uint_eq(cfg.max_seq_len, 65536);
    ck_assert_uint_eq(cfg.max_heads, 256);
    ck_assert_uint_eq(cfg.max_layers, 64);
    ck_assert_uint_eq(cfg.max_connections, 1024);
    ck_assert_uint_eq(cfg.max_concurrent, 0);
    ck_assert_uint_eq(cfg.queue_timeout_ms, 2000);
    ck_assert_str_eq(cfg.api_key, "");
    ck_assert(!cfg.access_log);
    env_set("ATTN_API_KEY", "from-env");
    env_set("ATTN_MAX_SEQ_LEN", "512");
    env_set("ATTN_ACCESS_LOG", "on");
    ck_assert_int_eq(PARSE("--api-key", "from-flag", "--max-heads", "8", "--max-layers", "3",
                           "--max-connections", "10", "--max-concurrent", "2",
                           "--queue-timeout-ms", "0", "--api-key-file", "/run/key"),
                     SRV_CLI_RUN);
    ck_assert_str_eq(cfg.api_key, "from-flag");
    ck_assert_str_eq(cfg.api_key_file, "/run/key");
    ck_assert_uint_eq(cfg.max_seq_len, 512);
    ck_assert_uint_eq(cfg.max_heads, 8);
    ck_assert_uint_eq(cfg.max_layers, 3);
    ck_assert_uint_eq(cfg.max_connections, 10);
    ck_assert_uint_eq(cfg.max_concurrent, 2);
    ck_assert_uint_eq(cfg.queue_timeout_ms, 0);
    ck_assert(cfg.access_log);
    char longkey[300];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    assert_error_names(PARSE("--api-key", longkey), "--api-key", NULL);
    assert_error_names(PARSE("--max-seq-len", "0"), "--max-seq-len", "0");
    ck_assert_int_eq(PARSE("--help"), SRV_CLI_EXIT);
    ck_assert_msg(strstr(out, "--api-key") && strstr(out, "ATTN_MAX_CONCURRENT") &&
                      strstr(out, "--access-log"),
                  "--help lacks the operations flags");
}
END_TEST

START_TEST(help_wins_over_later_flags_but_not_earlier_errors)
{
    ck_assert_int_eq(PARSE("--help", "--bogus"), SRV_CLI_EXIT);
    setup();
    ck_assert_int_eq(PARSE("--bogus", "--help"), SRV_CLI_ERROR);
}
END_TEST

START_TEST(help_fits_a_small_buffer)
{
    char small[40];
    char *argv[] = {(char *)"attention-server", (char *)"--help", NULL};

    memset(small, 'x', sizeof small);
    ck_assert_int_eq(srv_config_parse(&cfg, 2, argv, fake_getenv, small, 16, err, sizeof err),
                     SRV_CLI_EXIT);
    ck_assert_uint_eq(strlen(small), 15);
    ck_assert_int_eq(small[16], 'x');
}
END_TEST

START_TEST(version_names_server_and_blas)
{
    ck_assert_int_eq(PARSE("--version"), SRV_CLI_EXIT);
    ck_assert_msg(strncmp(out, "attention-server 0.1.0\n", 23) == 0, "got '%s'", out);
    ck_assert_msg(strstr(out, "BLAS") != NULL, "got '%s'", out);
    ck_assert_msg(strstr(out, attn_blas_info()) != NULL, "got '%s'", out);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("parse");

    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, defaults_match_the_documentation);
    tcase_add_test(tc, env_sets_every_option);
    tcase_add_test(tc, flags_win_over_env);
    tcase_add_test(tc, empty_env_counts_as_unset);
    tcase_add_test(tc, both_flag_forms);
    tcase_add_test(tc, later_flag_wins);
    tcase_add_test(tc, port_zero_and_bounds_accepted);
    tcase_add_test(tc, size_suffixes_are_binary);
    tcase_add_test(tc, bad_sizes_rejected);
    tcase_add_test(tc, out_of_range_numbers_rejected);
    tcase_add_test(tc, env_errors_name_the_variable);
    tcase_add_test(tc, hosts_literal_or_localhost);
    tcase_add_test(tc, quiet_switch_forms);
    tcase_add_test(tc, unknown_flags_and_arguments_rejected);
    tcase_add_test(tc, help_lists_every_flag_env_and_default);
    tcase_add_test(tc, help_wins_over_later_flags_but_not_earlier_errors);
    tcase_add_test(tc, operations_flags_and_their_env);
    tcase_add_test(tc, help_fits_a_small_buffer);
    tcase_add_test(tc, version_names_server_and_blas);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(config_suite());
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
