/*
 * ec_token: etcd's auth token providers (--auth-token), as etcd 3.4's
 * auth/simple_token.go and auth/jwt.go.
 *
 * simple: an opaque token "<16 random letters>.<n>" made by the member that
 * checked the password and proposed through the log (InternalAuthenticate), so
 * every member applying the entry learns it (ec_token_assign) and accepts it.
 * A simple token lives --auth-token-ttl seconds (default 300) after its last
 * use (each successful ec_token_info renews it, as etcd's TTL keeper); tokens
 * live in memory only, so a restart forgets them (clients re-authenticate on
 * "etcdserver: invalid auth token", as they do with etcd).
 *
 * jwt: "jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m" (etcd's option
 * syntax; ttl a Go duration, default 5m; pub-key may be a PEM public key or
 * certificate; priv-key optional: without it the member only verifies). Tokens
 * are signed JWTs (header {"alg":..,"typ":"JWT"}, claims {"exp":..,"revision":..,
 * "username":..}, byte for byte what etcd's golang-jwt makes) made and checked
 * with OpenSSL's libcrypto: RS256/384/512, PS256/384/512, ES256/384/512 (raw
 * r||s signatures), and HS256/384/512 (priv-key is the secret, as in etcd). A
 * token is accepted only with the configured method in its header, a good
 * signature, and exp (if any) after now, nbf/iat (if any) at or before now
 * (golang-jwt v4's rules). Any member with the key accepts them; the
 * revision claim is the auth revision at signing, so after any auth change the
 * token gets "etcdserver: revision of auth store is old" and the client
 * re-authenticates, as with etcd.
 *
 * "" is etcd's nop provider: it makes and accepts no token.
 *
 * Time is handed in (milliseconds of the server's clock): this module reads no
 * clock. For jwt it must be the Unix wall clock (exp is Unix seconds, checked
 * on every member); simple tokens only need one steady clock per member.
 * Threading: every function may be called from any thread (one mutex).
 */
#ifndef METASTORE_EC_TOKEN_H
#define METASTORE_EC_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* etcd's --auth-token-ttl default (seconds) and the jwt ttl default (5 min). */
#define EC_TOKEN_DEFAULT_TTL_S 300
#define EC_TOKEN_JWT_DEFAULT_TTL_MS (5 * 60 * 1000)

/* Longest token ec_token_info accepts. */
#define EC_TOKEN_MAX 8192

typedef struct ec_tokens ec_tokens;

/*
 * ec_tokens_open - parse @spec (the --auth-token value: "simple", "jwt,..." or
 * ""), read and check jwt keys now, and make the provider. @ttl_s is
 * --auth-token-ttl (simple tokens; 0 = default). Returns 0 and *@out, or -1
 * with @err filled (nothing allocated) with etcd's message and some detail:
 * "auth: invalid auth options" (unknown type, an option without exactly one
 * '=', an option twice, a bad ttl, an unreadable key file, a missing or
 * unknown sign-method), "unsupported signing method: none|EdDSA",
 * "auth: missing key data", "auth: public and private keys don't match",
 * golang-jwt's "invalid key: Key must be a PEM encoded PKCS1 or PKCS8 key"
 * (also for encrypted keys: never prompted for), "key is not a valid RSA|ECDSA
 * private|public key", "key is invalid" (an ES method with a key of another
 * curve; etcd would fail only when signing). On success @err is "" or, as
 * etcd only warns about them, "unknown JWT options: [...]".
 */
int ec_tokens_open(const char *spec, unsigned ttl_s, ec_tokens **out, char *err, size_t errlen);

/* ec_tokens_close - free @t (NULL ok). */
void ec_tokens_close(ec_tokens *t);

/* ec_tokens_is_simple - whether @t makes simple tokens (the proposer must then
 * make one with ec_token_simple_new before proposing the authenticate). */
bool ec_tokens_is_simple(const ec_tokens *t);

/*
 * ec_token_simple_new - fill @out (>= 17 bytes) with 16 random letters
 * [a-zA-Z] and a NUL. Returns 0, or -1 if the random source fails.
 */
int ec_token_simple_new(char *out, size_t cap);

/*
 * ec_token_assign - an authenticate entry was applied for @user at auth
 * revision @rev. simple: @simple is the proposer's 16 letters; the token is
 * "<simple>.<@index>" (@index: the log index of the entry, so it is the same on
 * every member), remembered with expiry @now_ms + ttl. jwt: a new signed token
 * (@simple ignored) with exp = floor((now + ttl) / 1 s), as etcd's
 * time.Now().Add(ttl).Unix(). *@token is malloc'd (free()), NULL on error.
 * Returns EC_OK, EC_NOMEM, EC_INTERNAL (signing failed), EC_INVALID_AUTH_MGMT
 * (jwt without a private key: etcd's "token signing attempted with
 * verify-only key"), or EC_AUTH_FAILED (the nop provider, as etcd's).
 */
int ec_token_assign(ec_tokens *t, const char *user, uint64_t rev, const char *simple,
		    uint64_t index, int64_t now_ms, char **token);

/*
 * ec_token_info - who @tok (@len bytes, not NUL-terminated) names: copies the
 * user into @user (@cap bytes) and the auth revision into *@rev (simple: the
 * store's current revision @cur_rev, as etcd; jwt: the signed claim).
 * Returns EC_OK, or EC_INVALID_AUTH_TOKEN when unknown, expired, malformed,
 * badly signed, longer than EC_TOKEN_MAX, or naming a user that does not fit
 * @cap (or holds a NUL). A simple token's expiry moves to @now_ms + ttl; one
 * whose expiry has passed is dropped even before ec_token_expire runs.
 */
int ec_token_info(ec_tokens *t, const char *tok, size_t len, uint64_t cur_rev, int64_t now_ms,
		  char *user, size_t cap, uint64_t *rev);

/* ec_token_forget_user - drop every simple token of @user (deleted user,
 * changed password). ec_token_forget_all - drop every simple token (auth
 * disabled). No effect for jwt. */
void ec_token_forget_user(ec_tokens *t, const char *user);
void ec_token_forget_all(ec_tokens *t);

/* ec_token_expire - drop simple tokens whose expiry is before @now_ms (the
 * server calls it about once a second). */
void ec_token_expire(ec_tokens *t, int64_t now_ms);

#endif
