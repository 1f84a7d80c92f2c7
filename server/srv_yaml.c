/*
 * srv_yaml: libyaml's document loader, plus the YAML 1.1 typing of plain
 * scalars that gopkg.in/yaml.v2 applies (srv_yaml.h). Kinds and resolved texts
 * are worked out once at load, one slot per node.
 */
#include "server/srv_yaml.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "server/srv_log.h"

struct srv_yaml {
	yaml_document_t doc;
	size_t n;            /* nodes */
	srv_yaml_kind *kind; /* [n], node i at [i - 1] */
	char **owned;        /* [n]: resolved text we allocated, else NULL */
};

static bool in_list(const char *s, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* yaml.v2's integers: Go's strconv.ParseInt/ParseUint with base 0 after every
 * '_' is dropped. Writes the value in decimal to @out. */
static bool resolve_int(const char *s, char *out, size_t outlen)
{
	char buf[80];
	size_t n = 0;
	for (; *s; s++) {
		if (*s == '_')
			continue;
		if (n + 1 >= sizeof buf)
			return false;
		buf[n++] = *s;
	}
	buf[n] = '\0';
	const char *p = buf;
	bool neg = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	unsigned base = 10;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		base = 16, p += 2;
	else if (p[0] == '0' && (p[1] == 'o' || p[1] == 'O'))
		base = 8, p += 2;
	else if (p[0] == '0' && (p[1] == 'b' || p[1] == 'B'))
		base = 2, p += 2;
	else if (p[0] == '0' && p[1])
		base = 8, p += 1;
	if (!*p)
		return false;
	uint64_t v = 0;
	for (; *p; p++) {
		unsigned d;
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (*p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (*p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			return false;
		if (d >= base || v > (UINT64_MAX - d) / base)
			return false;
		v = v * base + d;
	}
	if (neg && v > (uint64_t)INT64_MAX + 1)
		return false;
	snprintf(out, outlen, "%s%llu", neg && v ? "-" : "", (unsigned long long)v);
	return true;
}

/* yaml.v2's floats: [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, and
 * the infinities and NaN. */
static bool is_float(const char *s)
{
	static const char *const special[] = {".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf",
	                                      "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
	                                      ".NaN",  ".NAN",  NULL};
	if (in_list(s, special))
		return true;
	if (*s == '+' || *s == '-')
		s++;
	size_t ip = strspn(s, "0123456789");
	s += ip;
	size_t fp = 0;
	if (*s == '.') {
		s++;
		fp = strspn(s, "0123456789");
		s += fp;
	}
	if (ip == 0 && fp == 0)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '+' || *s == '-')
			s++;
		size_t ep = strspn(s, "0123456789");
		if (ep == 0)
			return false;
		s += ep;
	}
	return *s == '\0';
}

/* Type node @id (1-based) and, for booleans and integers, store its text. */
static int resolve(srv_yaml *y, int id)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const yes[] = {"y",    "Y",    "yes", "Yes", "YES", "true",
	                                  "True", "TRUE", "on",  "On",  "ON",  NULL};
	static const char *const no[] = {"n",     "N",     "no",  "No",  "NO",  "false",
	                                 "False", "FALSE", "off", "Off", "OFF", NULL};
	yaml_node_t *nd = yaml_document_get_node(&y->doc, id);
	srv_yaml_kind *k = &y->kind[id - 1];
	if (nd->type == YAML_SEQUENCE_NODE) {
		*k = SRV_YAML_SEQ;
		return 0;
	}
	if (nd->type == YAML_MAPPING_NODE) {
		*k = SRV_YAML_MAP;
		return 0;
	}
	const char *s = (const char *)nd->data.scalar.value;
	*k = SRV_YAML_STR;
	if (nd->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return 0;
	char num[32];
	const char *text = NULL;
	if (in_list(s, nulls)) {
		*k = SRV_YAML_NULL;
	} else if (in_list(s, yes)) {
		*k = SRV_YAML_BOOL;
		text = "true";
	} else if (in_list(s, no)) {
		*k = SRV_YAML_BOOL;
		text = "false";
	} else if (resolve_int(s, num, sizeof num)) {
		*k = SRV_YAML_INT;
		text = num;
	} else if (is_float(s)) {
		*k = SRV_YAML_FLOAT;
	}
	if (text && !(y->owned[id - 1] = strdup(text)))
		return -1;
	return 0;
}

int srv_yaml_load(const char *path, srv_yaml **out, char *err, size_t errlen)
{
	*out = NULL;
	FILE *f = fopen(path, "rb");
	if (!f) {
		srv_errf(err, errlen, "open %s: %s", path, strerror(errno));
		return -1;
	}
	srv_yaml *y = calloc(1, sizeof *y);
	yaml_parser_t parser;
	if (!y || !yaml_parser_initialize(&parser)) {
		free(y);
		fclose(f);
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	errno = 0;
	int ok = yaml_parser_load(&parser, &y->doc);
	if (!ok) {
		int read_errno = ferror(f) ? errno : 0;
		const char *problem = parser.problem ? parser.problem : "cannot parse the file";
		if (read_errno)
			srv_errf(err, errlen, "read %s: %s", path, strerror(read_errno));
		else if (parser.error == YAML_READER_ERROR)
			srv_errf(err, errlen, "%s: %s", path, problem);
		else
			srv_errf(err, errlen, "%s: line %lu: %s%s%s%s", path,
			         (unsigned long)parser.problem_mark.line + 1, problem,
			         parser.context ? " (" : "", parser.context ? parser.context : "",
			         parser.context ? ")" : "");
	}
	yaml_parser_delete(&parser);
	fclose(f);
	if (!ok) {
		free(y);
		return -1;
	}
	y->n = (size_t)(y->doc.nodes.top - y->doc.nodes.start);
	y->kind = calloc(y->n ? y->n : 1, sizeof *y->kind);
	y->owned = calloc(y->n ? y->n : 1, sizeof *y->owned);
	bool oom = !y->kind || !y->owned;
	for (size_t i = 0; i < y->n && !oom; i++)
		oom = resolve(y, (int)i + 1) != 0;
	if (oom) {
		srv_yaml_free(y);
		srv_errf(err, errlen, "out of memory");
		return -1;
	}
	*out = y;
	return 0;
}

void srv_yaml_free(srv_yaml *y)
{
	if (!y)
		return;
	for (size_t i = 0; y->owned && i < y->n; i++)
		free(y->owned[i]);
	free(y->owned);
	free(y->kind);
	yaml_document_delete(&y->doc);
	free(y);
}

/* Node @id of @y, or NULL. */
static yaml_node_t *node_of(const srv_yaml *y, int id)
{
	if (id <= 0 || (size_t)id > y->n)
		return NULL;
	return y->doc.nodes.start + (id - 1);
}

int srv_yaml_root(const srv_yaml *y)
{
	return y->n ? 1 : 0; /* libyaml numbers the root first */
}

srv_yaml_kind srv_yaml_kind_of(const srv_yaml *y, int node)
{
	return node_of(y, node) ? y->kind[node - 1] : SRV_YAML_NONE;
}

const char *srv_yaml_text(const srv_yaml *y, int node)
{
	yaml_node_t *nd = node_of(y, node);
	if (!nd || nd->type != YAML_SCALAR_NODE)
		return "";
	return y->owned[node - 1] ? y->owned[node - 1] : (const char *)nd->data.scalar.value;
}

unsigned long srv_yaml_line(const srv_yaml *y, int node)
{
	yaml_node_t *nd = node_of(y, node);
	return nd ? (unsigned long)nd->start_mark.line + 1 : 0;
}

size_t srv_yaml_len(const srv_yaml *y, int node)
{
	yaml_node_t *nd = node_of(y, node);
	if (nd && nd->type == YAML_MAPPING_NODE)
		return (size_t)(nd->data.mapping.pairs.top - nd->data.mapping.pairs.start);
	if (nd && nd->type == YAML_SEQUENCE_NODE)
		return (size_t)(nd->data.sequence.items.top - nd->data.sequence.items.start);
	return 0;
}

/* Pair @i of mapping @node, or NULL. */
static yaml_node_pair_t *pair_of(const srv_yaml *y, int node, size_t i)
{
	yaml_node_t *nd = node_of(y, node);
	if (!nd || nd->type != YAML_MAPPING_NODE || i >= srv_yaml_len(y, node))
		return NULL;
	return nd->data.mapping.pairs.start + i;
}

int srv_yaml_key(const srv_yaml *y, int node, size_t i)
{
	yaml_node_pair_t *p = pair_of(y, node, i);
	return p ? p->key : 0;
}

int srv_yaml_value(const srv_yaml *y, int node, size_t i)
{
	yaml_node_pair_t *p = pair_of(y, node, i);
	return p ? p->value : 0;
}

int srv_yaml_item(const srv_yaml *y, int node, size_t i)
{
	yaml_node_t *nd = node_of(y, node);
	if (!nd || nd->type != YAML_SEQUENCE_NODE || i >= srv_yaml_len(y, node))
		return 0;
	return nd->data.sequence.items.start[i];
}

const char *srv_yaml_kind_name(srv_yaml_kind k)
{
	switch (k) {
	case SRV_YAML_NULL:
		return "null";
	case SRV_YAML_BOOL:
		return "a boolean";
	case SRV_YAML_INT:
	case SRV_YAML_FLOAT:
		return "a number";
	case SRV_YAML_STR:
		return "a string";
	case SRV_YAML_SEQ:
		return "a list";
	case SRV_YAML_MAP:
		return "a mapping";
	case SRV_YAML_NONE:
		break;
	}
	return "nothing";
}
