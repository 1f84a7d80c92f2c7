/*
 * srv_config: parse etcd-style flags into srv_config (see srv_config.h). The flag
 * table drives parsing, defaults and --help alike, so a flag is declared once.
 */
#include "server/srv_config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ms_version.h"

typedef enum { F_STR, F_INT, F_URLS } flag_kind;

typedef struct flag_def {
	const char *name;
	flag_kind kind;
	size_t off;
	const char *def; /* default, as text; NULL = derived after parsing */
	const char *help;
} flag_def;

#define OFF(f) offsetof(srv_config, f)

static const flag_def flags[] = {
	{"name", F_STR, OFF(name), "default", "Human-readable name for this member."},
	{"data-dir", F_STR, OFF(data_dir), NULL, "Path to the data directory (default \"${name}.metastore\")."},
	{"listen-client-urls", F_URLS, OFF(listen_client), "http://localhost:2379",
	 "List of URLs to listen on for client traffic."},
	{"advertise-client-urls", F_URLS, OFF(advertise_client), "http://localhost:2379",
	 "List of this member's client URLs to advertise to the public."},
	{"listen-peer-urls", F_URLS, OFF(listen_peer), "http://localhost:2380",
	 "List of URLs to listen on for peer traffic."},
	{"initial-advertise-peer-urls", F_URLS, OFF(initial_advertise_peer), "http://localhost:2380",
	 "List of this member's peer URLs to advertise to the rest of the cluster."},
	{"initial-cluster", F_STR, OFF(initial_cluster), NULL,
	 "Initial cluster configuration for bootstrapping (default \"${name}=${initial-advertise-peer-urls}\")."},
	{"initial-cluster-state", F_STR, OFF(initial_cluster_state), "new",
	 "Initial cluster state ('new' or 'existing')."},
	{"initial-cluster-token", F_STR, OFF(initial_cluster_token), "etcd-cluster",
	 "Initial cluster token for the cluster during bootstrap."},
	{"heartbeat-interval", F_INT, OFF(heartbeat_interval_ms), "100", "Time (in milliseconds) of a heartbeat interval."},
	{"election-timeout", F_INT, OFF(election_timeout_ms), "1000", "Time (in milliseconds) for an election to timeout."},
	{"snapshot-count", F_INT, OFF(snapshot_count), "100000",
	 "Number of committed transactions to trigger a snapshot to disk."},
	{"quota-backend-bytes", F_INT, OFF(quota_backend_bytes), "0",
	 "Raise alarms when backend size exceeds the given quota (0 defaults to low space quota)."},
	{"max-request-bytes", F_INT, OFF(max_request_bytes), "1572864",
	 "Maximum client request size in bytes the server will accept."},
	{"max-txn-ops", F_INT, OFF(max_txn_ops), "128", "Maximum number of operations permitted in a transaction."},
	{"auto-compaction-mode", F_STR, OFF(auto_compaction_mode), "periodic",
	 "'periodic' or 'revision' (not yet acted upon: compaction is manual)."},
	{"auto-compaction-retention", F_STR, OFF(auto_compaction_retention), "0",
	 "Auto compaction retention; 0 means disable auto compaction."},
	{"grpc-threads", F_INT, OFF(grpc_threads), "2", "metastore: completion-queue threads serving clients."},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

void srv_urls_free(srv_urls *u)
{
	for (size_t i = 0; i < u->n; i++) {
		free(u->url[i]);
		free(u->addr[i]);
	}
	u->n = 0;
}

/* Parse "http://host:port[,...]" into @u. Only plain http is served for now. */
static int parse_urls(const char *val, srv_urls *u, char *err, size_t errlen)
{
	srv_urls_free(u);
	const char *p = val;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (u->n == SRV_MAX_URLS) {
			snprintf(err, errlen, "too many URLs in %s", val);
			return -1;
		}
		char *url = strndup(p, len);
		if (!url) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		const char *hp;
		if (strncmp(url, "http://", 7) == 0) {
			hp = url + 7;
		} else if (strncmp(url, "https://", 8) == 0) {
			snprintf(err, errlen, "URL %s: TLS is not supported yet (use http://)", url);
			free(url);
			return -1;
		} else {
			snprintf(err, errlen, "URL scheme must be http or https: %s", url);
			free(url);
			return -1;
		}
		size_t hl = strcspn(hp, "/");
		const char *colon = memrchr(hp, ':', hl);
		if (!colon || colon == hp || colon + 1 == hp + hl) {
			snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", url);
			free(url);
			return -1;
		}
		char *addr = strndup(hp, hl);
		if (!addr) {
			free(url);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		u->url[u->n] = url;
		u->addr[u->n] = addr;
		u->n++;
		if (!end)
			break;
		p = end + 1;
	}
	if (u->n == 0) {
		snprintf(err, errlen, "empty URL list");
		return -1;
	}
	return 0;
}

static int set_flag(srv_config *cfg, const flag_def *f, const char *val, char *err, size_t errlen)
{
	char *base = (char *)cfg + f->off;
	switch (f->kind) {
	case F_STR: {
		char **s = (char **)base;
		free(*s);
		*s = strdup(val);
		if (!*s) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		return 0;
	}
	case F_INT: {
		char *end;
		errno = 0;
		long long v = strtoll(val, &end, 10);
		if (errno || end == val || *end || v < 0) {
			snprintf(err, errlen, "invalid value \"%s\" for flag --%s", val, f->name);
			return -1;
		}
		if (f->off == OFF(grpc_threads))
			*(int *)base = (int)v;
		else
			*(int64_t *)base = v;
		return 0;
	}
	case F_URLS:
		if (parse_urls(val, (srv_urls *)base, err, errlen) != 0) {
			size_t l = strlen(err);
			snprintf(err + l, errlen - l, " (flag --%s)", f->name);
			return -1;
		}
		return 0;
	}
	return -1;
}

static const flag_def *find_flag(const char *name, size_t len)
{
	for (size_t i = 0; i < NFLAGS; i++)
		if (strlen(flags[i].name) == len && strncmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

int srv_config_parse(srv_config *cfg, int argc, char **argv, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < NFLAGS; i++)
		if (flags[i].def && set_flag(cfg, &flags[i], flags[i].def, err, errlen) != 0)
			return SRV_CONFIG_ERROR;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return SRV_CONFIG_HELP;
		if (strcmp(a, "--version") == 0 || strcmp(a, "-version") == 0)
			return SRV_CONFIG_VERSION;
		/* pflag accepts one or two dashes for long flags. */
		const char *name = a[0] == '-' ? (a[1] == '-' ? a + 2 : a + 1) : NULL;
		if (!name || !*name) {
			snprintf(err, errlen, "unexpected argument \"%s\"", a);
			return SRV_CONFIG_ERROR;
		}
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const flag_def *f = find_flag(name, nlen);
		if (!f) {
			snprintf(err, errlen, "unknown flag: --%.*s", (int)nlen, name);
			return SRV_CONFIG_ERROR;
		}
		const char *val = eq ? eq + 1 : NULL;
		if (!val) {
			if (i + 1 >= argc) {
				snprintf(err, errlen, "flag needs an argument: --%s", f->name);
				return SRV_CONFIG_ERROR;
			}
			val = argv[++i];
		}
		if (set_flag(cfg, f, val, err, errlen) != 0)
			return SRV_CONFIG_ERROR;
	}

	if (!cfg->data_dir) {
		size_t l = strlen(cfg->name) + sizeof(".metastore");
		cfg->data_dir = malloc(l);
		if (!cfg->data_dir) {
			snprintf(err, errlen, "out of memory");
			return SRV_CONFIG_ERROR;
		}
		snprintf(cfg->data_dir, l, "%s.metastore", cfg->name);
	}
	if (!cfg->initial_cluster) {
		/* name=url for each advertised peer URL, as etcd derives it. */
		size_t l = 1;
		for (size_t i = 0; i < cfg->initial_advertise_peer.n; i++)
			l += strlen(cfg->name) + strlen(cfg->initial_advertise_peer.url[i]) + 2;
		cfg->initial_cluster = calloc(1, l);
		if (!cfg->initial_cluster) {
			snprintf(err, errlen, "out of memory");
			return SRV_CONFIG_ERROR;
		}
		for (size_t i = 0; i < cfg->initial_advertise_peer.n; i++) {
			if (i)
				strcat(cfg->initial_cluster, ",");
			strcat(cfg->initial_cluster, cfg->name);
			strcat(cfg->initial_cluster, "=");
			strcat(cfg->initial_cluster, cfg->initial_advertise_peer.url[i]);
		}
	}
	if (strcmp(cfg->initial_cluster_state, "new") != 0 &&
	    strcmp(cfg->initial_cluster_state, "existing") != 0) {
		snprintf(err, errlen, "invalid value \"%s\" for flag --initial-cluster-state: must be new or existing",
			 cfg->initial_cluster_state);
		return SRV_CONFIG_ERROR;
	}
	if (cfg->max_request_bytes == 0 || cfg->max_txn_ops == 0 || cfg->grpc_threads <= 0) {
		snprintf(err, errlen, "--max-request-bytes, --max-txn-ops and --grpc-threads must be positive");
		return SRV_CONFIG_ERROR;
	}
	return 0;
}

void srv_config_free(srv_config *cfg)
{
	for (size_t i = 0; i < NFLAGS; i++) {
		char *base = (char *)cfg + flags[i].off;
		if (flags[i].kind == F_STR) {
			free(*(char **)base);
			*(char **)base = NULL;
		} else if (flags[i].kind == F_URLS) {
			srv_urls_free((srv_urls *)base);
		}
	}
	free(cfg->data_dir);
	cfg->data_dir = NULL;
}

size_t srv_urls_split(const char *list, srv_urls *out)
{
	memset(out, 0, sizeof(*out));
	const char *p = list;
	while (p && *p && out->n < SRV_MAX_URLS) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (len && (out->url[out->n] = strndup(p, len)) != NULL)
			out->n++;
		p = end ? end + 1 : NULL;
	}
	return out->n;
}

size_t srv_config_peer_urls_of(const char *initial_cluster, const char *name, srv_urls *out)
{
	memset(out, 0, sizeof(*out));
	const char *p = initial_cluster;
	size_t nl = strlen(name);
	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		if (eq && (size_t)(eq - p) == nl && strncmp(p, name, nl) == 0 && out->n < SRV_MAX_URLS) {
			out->url[out->n] = strndup(eq + 1, len - (size_t)(eq - p) - 1);
			out->addr[out->n] = NULL;
			if (out->url[out->n])
				out->n++;
		}
		p = end ? end + 1 : NULL;
	}
	return out->n;
}

void srv_config_usage(FILE *out)
{
	fprintf(out,
		"Usage:\n\n  metastore [flags]\n\n"
		"  metastore " MS_VERSION " — an etcd v3 API server (etcd %s compatible).\n\n"
		"Flags (as etcd's, with etcd's defaults):\n",
		MS_ETCD_VERSION);
	for (size_t i = 0; i < NFLAGS; i++) {
		fprintf(out, "  --%s", flags[i].name);
		if (flags[i].def)
			fprintf(out, " '%s'", flags[i].def);
		fprintf(out, "\n      %s\n", flags[i].help);
	}
	fprintf(out, "  --version\n      Print the version and exit.\n  -h, --help\n      Show this help.\n");
}
