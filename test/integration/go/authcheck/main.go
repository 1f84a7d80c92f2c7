// authcheck: etcd's authentication and RBAC through the Go clientv3 SDK (errors compared
// with the rpctypes values by value, as clients do) and through raw gRPC calls carrying
// a "token" metadata entry, checked against the behaviour of etcd 3.4.
//
//	authcheck enable -endpoints E      fresh server, auth disabled: AuthEnable refused
//	                                   without root / without the root role, Authenticate
//	                                   while disabled, a credentialed client while
//	                                   disabled; creates the users and roles the other
//	                                   subcommands use, then enables auth
//	authcheck client -endpoints E      (a) clientv3 with Username/Password inside and
//	                                   outside the permissions; raw Authenticate, tokens
//	                                   and error codes
//	authcheck watch -endpoints E       (b) a user's watch on a permitted prefix, then the
//	                                   permission revoked while it is open; refused
//	                                   watches (clientv3 and raw stream)
//	authcheck rolechange -endpoints E [-jwt]
//	                                   (c) the auth revision moves under an open client:
//	                                   role granted / revoked, password changed, user
//	                                   deleted; a raw call with the token taken before
//	authcheck ttl -endpoints E         (d) server --auth-token-ttl 2: idle client, expired
//	                                   raw token, a token kept alive by use
//	authcheck wrongpw -endpoints E     (e) bad credentials at clientv3.New
//	authcheck jwt -endpoints E         (f) server --auth-token jwt,...,ttl=2s: token shape
//	                                   and claims, tampered tokens, expiry
//	authcheck token -endpoints E -user U -password P
//	                                   print a token from a raw Authenticate (no checks)
//	authcheck cluster -endpoints E1,E2,E3 [-key K -want V -rounds N]
//	                                   a token from each member works on every member,
//	                                   also when used at once (N fresh tokens per pair)
//
// -as NAME reports the checks as authcheck/NAME/... (one subcommand run several times).
//
// Users made by "enable" (root password from -rootpw, default "rootpw"):
//
//	alice/apw  role app: readwrite prefix "a/", read prefix "ro/", write prefix "wo/"
//	bob/bpw    no role
//	carol      --no-password, no role
//
// Prints "ok authcheck/SUB/NAME" or "not ok authcheck/SUB/NAME (reason)" per check plus
// "#" diagnostics; exits 1 if any check failed. Timeouts and sleeps only bound waits,
// except where a token's TTL is the point (ttl, jwt), and then with >= 1.5 s margin.
//
// Build (offline, Debian's etcd 3.4 sources):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o authcheck .
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/pkg/logutil"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ------------------------------------------------------------------ reporting

var (
	sub      string
	failures int
	outMu    sync.Mutex
)

func say(format string, a ...interface{}) {
	outMu.Lock()
	fmt.Printf(format+"\n", a...)
	outMu.Unlock()
}

func note(format string, a ...interface{}) { say("# "+format, a...) }

func ok(name string) { say("ok authcheck/%s/%s", sub, name) }

func notOK(name, reason string, diag ...string) {
	failures++
	say("not ok authcheck/%s/%s (%s)", sub, name, reason)
	for _, d := range diag {
		for _, l := range strings.Split(d, "\n") {
			say("#   %s", l)
		}
	}
}

func check(name string, cond bool, reason string, diag ...string) bool {
	if cond {
		ok(name)
	} else {
		notOK(name, reason, diag...)
	}
	return cond
}

func eqStr(name, want, got string) bool {
	return check(name, want == got, "value mismatch", "expected: "+want, "actual:   "+got)
}

func die(name, format string, a ...interface{}) {
	notOK(name, fmt.Sprintf(format, a...))
	os.Exit(1)
}

func must(name string, err error) {
	if err != nil {
		die(name, "unexpected error: %v", err)
	}
}

func done() {
	if failures > 0 {
		note("%d check(s) failed", failures)
		os.Exit(1)
	}
	os.Exit(0)
}

// errIs: err must be exactly want (an rpctypes.EtcdError value, compared with ==).
func errIs(name string, want, err error) bool {
	if err == want {
		ok(name)
		return true
	}
	notOK(name, "wrong error", fmt.Sprintf("expected: %v", want), fmt.Sprintf("actual:   %v (%T)", err, err))
	return false
}

// observe prints what the server did, as a "#" line that is not a check.
func observe(name string, err error, detail string) {
	res := "applied"
	if err != nil {
		res = "refused: " + err.Error()
	}
	note("observed %s/%s: %s (%s)", sub, name, res, detail)
}

func noErr(name string, err error) bool {
	return check(name, err == nil, "unexpected error", fmt.Sprintf("error: %v", err))
}

// grpcErr: a raw gRPC error must have exactly this status code and message.
func grpcErr(name string, err error, code, msg string) bool {
	got := "<nil>"
	if err != nil {
		st, _ := status.FromError(err)
		got = fmt.Sprintf("%s: %s", st.Code(), st.Message())
	}
	return eqStr(name, code+": "+msg, got)
}

// ------------------------------------------------------------------ clients

var (
	endpoints string
	rootPW    string
)

func quietLog() *zap.Config {
	lcfg := logutil.DefaultZapLoggerConfig
	lcfg.Level = zap.NewAtomicLevelAt(zap.FatalLevel)
	return &lcfg
}

func newClientErr(eps, user, pw string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(eps, ","),
		DialTimeout: 5 * time.Second,
		Username:    user,
		Password:    pw,
		LogConfig:   quietLog(),
	})
}

func newClient(name, user, pw string) *clientv3.Client {
	cli, err := newClientErr(endpoints, user, pw)
	if err != nil {
		die(name, "clientv3.New(%s): %v", user, err)
	}
	return cli
}

func tctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 15*time.Second)
}

func put(cli *clientv3.Client, key, val string) error {
	ctx, cancel := tctx()
	defer cancel()
	_, err := cli.Put(ctx, key, val)
	return err
}

func get(cli *clientv3.Client, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := tctx()
	defer cancel()
	return cli.Get(ctx, key, opts...)
}

// value: the value of key (or "<missing>"), or the error text.
func value(cli *clientv3.Client, key string) string {
	r, err := get(cli, key)
	if err != nil {
		return "error: " + err.Error()
	}
	if len(r.Kvs) == 0 {
		return "<missing>"
	}
	return string(r.Kvs[0].Value)
}

// raw: a plain gRPC connection (no clientv3 credentials) for calls with a chosen token.
type raw struct {
	conn *grpc.ClientConn
	kv   pb.KVClient
	auth pb.AuthClient
	w    pb.WatchClient
}

func dialRaw(ep string) *raw {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, ep, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		die("raw-dial", "dial %s: %v", ep, err)
	}
	return &raw{conn: conn, kv: pb.NewKVClient(conn), auth: pb.NewAuthClient(conn), w: pb.NewWatchClient(conn)}
}

func withToken(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, token)
}

func (r *raw) authenticate(user, pw string) (*pb.AuthenticateResponse, error) {
	ctx, cancel := tctx()
	defer cancel()
	return r.auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: user, Password: pw})
}

func (r *raw) token(name, user, pw string) string {
	resp, err := r.authenticate(user, pw)
	if err != nil {
		die(name, "Authenticate(%s): %v", user, err)
	}
	return resp.Token
}

func (r *raw) rangeKey(token, key string) (*pb.RangeResponse, error) {
	ctx, cancel := tctx()
	defer cancel()
	return r.kv.Range(withToken(ctx, token), &pb.RangeRequest{Key: []byte(key)})
}

func (r *raw) putKey(token, key, val string) (*pb.PutResponse, error) {
	ctx, cancel := tctx()
	defer cancel()
	return r.kv.Put(withToken(ctx, token), &pb.PutRequest{Key: []byte(key), Value: []byte(val)})
}

func (r *raw) userList(token string) (*pb.AuthUserListResponse, error) {
	ctx, cancel := tctx()
	defer cancel()
	return r.auth.UserList(withToken(ctx, token), &pb.AuthUserListRequest{})
}

// watchCreate opens a raw watch stream with token and sends one create request for key
// (prefix when prefix is true); returns the first response.
func (r *raw) watchCreate(token, key string, prefix bool) (*pb.WatchResponse, pb.Watch_WatchClient, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, err := r.w.Watch(withToken(ctx, token))
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	creq := &pb.WatchCreateRequest{Key: []byte(key)}
	if prefix {
		creq.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(key))
	}
	if err := st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: creq}}); err != nil {
		cancel()
		return nil, nil, nil, err
	}
	resp, err := st.Recv()
	if err != nil {
		cancel()
		return nil, nil, nil, err
	}
	return resp, st, cancel, nil
}

// ------------------------------------------------------------------ constants

const (
	eUserEmpty   = "etcdserver: user name is empty"
	eDenied      = "etcdserver: permission denied"
	eAuthFailed  = "etcdserver: authentication failed, invalid user ID or password"
	eInvalidTok  = "etcdserver: invalid auth token"
	eOldRevision = "etcdserver: revision of auth store is old"
	eNoPwUser    = "auth: authentication failed, password was given for no password user"
	// a refused watch's cancel_reason: etcd puts the status error's Error() text there
	wireDenied = "rpc error: code = PermissionDenied desc = " + eDenied
)

var simpleTokenRE = regexp.MustCompile(`^[a-zA-Z]{16}\.[0-9]+$`)

// ------------------------------------------------------------------ enable

func cmdEnable() {
	plain := newClient("connect", "", "")
	defer plain.Close()
	r := dialRaw(endpoints)
	defer r.conn.Close()
	ctx, cancel := tctx()
	defer cancel()

	_, err := plain.AuthEnable(ctx)
	errIs("enable-without-root-user", rpctypes.ErrRootUserNotExist, err)
	_, err = r.auth.AuthEnable(ctx, &pb.AuthEnableRequest{})
	grpcErr("enable-without-root-user-raw", err, "FailedPrecondition", "etcdserver: root user does not exist")

	_, err = r.authenticate("root", "x")
	grpcErr("authenticate-while-disabled-raw", err, "FailedPrecondition", "etcdserver: authentication is not enabled")
	// the same answer through clientv3's error conversion
	errIs("authenticate-while-disabled", rpctypes.ErrAuthNotEnabled, rpctypes.Error(err))

	_, err = plain.UserAdd(ctx, "root", rootPW)
	must("user-add-root", err)
	_, err = plain.AuthEnable(ctx)
	errIs("enable-without-root-role", rpctypes.ErrRootRoleNotExist, err)
	_, err = r.auth.AuthEnable(ctx, &pb.AuthEnableRequest{})
	grpcErr("enable-without-root-role-raw", err, "FailedPrecondition", "etcdserver: root user does not have root role")

	_, err = plain.RoleAdd(ctx, "root")
	must("role-add-root", err)
	_, err = plain.UserGrantRole(ctx, "root", "root")
	must("grant-root", err)
	_, err = plain.UserAdd(ctx, "alice", "apw")
	must("user-add-alice", err)
	_, err = plain.RoleAdd(ctx, "app")
	must("role-add-app", err)
	for _, p := range []struct {
		key string
		t   clientv3.PermissionType
	}{{"a/", clientv3.PermissionType(clientv3.PermReadWrite)}, {"ro/", clientv3.PermissionType(clientv3.PermRead)}, {"wo/", clientv3.PermissionType(clientv3.PermWrite)}} {
		_, err = plain.RoleGrantPermission(ctx, "app", p.key, clientv3.GetPrefixRangeEnd(p.key), p.t)
		must("grant-"+p.key, err)
	}
	_, err = plain.UserGrantRole(ctx, "alice", "app")
	must("grant-app", err)
	_, err = plain.UserAdd(ctx, "bob", "bpw")
	must("user-add-bob", err)
	_, err = plain.UserAddWithOptions(ctx, "carol", "", &clientv3.UserAddOptions{NoPassword: true})
	must("user-add-carol", err)

	// credentials while auth is disabled: clientv3.New ignores "not enabled"
	alice, err := newClientErr(endpoints, "alice", "apw")
	if noErr("client-with-credentials-while-disabled", err) {
		noErr("put-with-credentials-while-disabled", put(alice, "b/anything", "1"))
		alice.Close()
	}

	_, err = plain.AuthEnable(ctx)
	noErr("enable", err)
	_, err = plain.AuthEnable(ctx)
	errIs("enable-again-without-user", rpctypes.ErrUserEmpty, err)
	_, err = get(plain, "a/x")
	errIs("no-user-get", rpctypes.ErrUserEmpty, err)
	_, err = r.rangeKey("", "a/x")
	grpcErr("no-user-get-raw", err, "InvalidArgument", eUserEmpty)
	root := newClient("root-connect", "root", rootPW)
	defer root.Close()
	_, err = root.AuthEnable(ctx)
	noErr("enable-again-as-root", err)
	done()
}

// ------------------------------------------------------------------ (a) client

func cmdClient() {
	alice := newClient("alice-connect", "alice", "apw")
	defer alice.Close()
	root := newClient("root-connect", "root", rootPW)
	defer root.Close()
	ctx, cancel := tctx()
	defer cancel()

	noErr("put-permitted", put(alice, "a/1", "v1"))
	eqStr("get-permitted", "v1", value(alice, "a/1"))
	r, err := get(alice, "a/", clientv3.WithPrefix())
	if noErr("get-prefix-permitted", err) {
		eqStr("get-prefix-count", "1", fmt.Sprint(r.Count))
	}
	errIs("put-read-only", rpctypes.ErrPermissionDenied, put(alice, "ro/1", "x"))
	noErr("get-read-only", func() error { _, e := get(alice, "ro/1"); return e }())
	noErr("put-write-only", put(alice, "wo/1", "x"))
	_, err = get(alice, "wo/1")
	errIs("get-write-only", rpctypes.ErrPermissionDenied, err)
	errIs("put-outside", rpctypes.ErrPermissionDenied, put(alice, "b/1", "x"))
	_, err = get(alice, "b/1")
	errIs("get-outside", rpctypes.ErrPermissionDenied, err)
	_, err = alice.Delete(ctx, "b/1")
	errIs("delete-outside", rpctypes.ErrPermissionDenied, err)
	_, err = alice.Delete(ctx, "wo/1", clientv3.WithPrevKV())
	errIs("delete-write-only-prev-kv", rpctypes.ErrPermissionDenied, err)
	_, err = alice.Put(ctx, "wo/1", "y", clientv3.WithPrevKV())
	errIs("put-write-only-prev-kv", rpctypes.ErrPermissionDenied, err)
	_, err = alice.Put(ctx, "a/1", "v2", clientv3.WithPrevKV())
	noErr("put-readwrite-prev-kv", err)
	_, err = get(alice, "", clientv3.WithPrefix())
	errIs("get-everything", rpctypes.ErrPermissionDenied, err)
	_, err = get(alice, "a/", clientv3.WithRange("b/"))
	errIs("get-range-beyond", rpctypes.ErrPermissionDenied, err)

	tr, err := alice.Txn(ctx).If(clientv3.Compare(clientv3.Value("a/1"), "=", "v2")).
		Then(clientv3.OpPut("a/2", "t")).Else(clientv3.OpPut("wo/2", "e")).Commit()
	if noErr("txn-permitted", err) {
		check("txn-permitted-succeeded", tr.Succeeded, "compare was false")
	}
	_, err = alice.Txn(ctx).If(clientv3.Compare(clientv3.Value("b/1"), "=", "x")).Then(clientv3.OpPut("a/3", "t")).Commit()
	errIs("txn-compare-outside", rpctypes.ErrPermissionDenied, err)
	_, err = alice.Txn(ctx).If(clientv3.Compare(clientv3.Version("a/1"), ">", 0)).Then(clientv3.OpPut("a/3", "t")).Else(clientv3.OpGet("b/1")).Commit()
	errIs("txn-else-branch-outside", rpctypes.ErrPermissionDenied, err)
	eqStr("txn-refused-wrote-nothing", "<missing>", value(root, "a/3"))

	// RBAC holes of etcd 3.4.23's txn check (checkTxnReqsPermission looks at top-level
	// ops only and, for a put, only at the key): etcd applies all three below. Upstream
	// treats them as authorization bypasses (etcd PRs #21677, #21689), so they are
	// reported as "# observed" lines, not checks a server must reproduce.
	_, err = alice.Txn(ctx).Then(clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("b/1", "nested")}, nil)).Commit()
	observe("txn-nested-put-outside-permissions", err, "b/1 = "+value(root, "b/1"))
	must("root-put-wo", put(root, "wo/secret", "s"))
	tr, err = alice.Txn(ctx).Then(clientv3.OpPut("wo/secret", "s2", clientv3.WithPrevKV())).Commit()
	prev := "-"
	if err == nil && len(tr.Responses) == 1 && tr.Responses[0].GetResponsePut().PrevKv != nil {
		prev = string(tr.Responses[0].GetResponsePut().PrevKv.Value)
	}
	observe("txn-put-prev-kv-of-write-only-key", err, "prev_kv value returned: "+prev)
	lg, err := root.Grant(ctx, 100)
	must("root-grant", err)
	_, err = root.Put(ctx, "b/leased", "x", clientv3.WithLease(lg.ID))
	must("root-put-leased", err)
	_, err = alice.Put(ctx, "a/leased", "x", clientv3.WithLease(lg.ID))
	errIs("put-with-lease-of-unwritable-key", rpctypes.ErrPermissionDenied, err)
	_, err = alice.Txn(ctx).Then(clientv3.OpPut("a/leased", "x", clientv3.WithLease(lg.ID))).Commit()
	observe("txn-put-with-lease-of-unwritable-key", err, "a/leased = "+value(root, "a/leased"))
	_, err = root.Revoke(ctx, lg.ID)
	must("root-revoke", err)

	// compaction is not an admin operation in etcd 3.4
	rr, err := get(root, "a/1")
	must("root-get", err)
	_, err = alice.Compact(ctx, rr.Header.Revision-1)
	noErr("compact-by-user", err)

	// auth API as a non-root user
	ug, err := alice.UserGet(ctx, "alice")
	if noErr("user-get-self", err) {
		eqStr("user-get-self-roles", "app", strings.Join(ug.Roles, ","))
	}
	_, err = alice.UserGet(ctx, "bob")
	errIs("user-get-other", rpctypes.ErrPermissionDenied, err)
	rg, err := alice.RoleGet(ctx, "app")
	if noErr("role-get-own", err) {
		var ps []string
		for _, p := range rg.Perm {
			ps = append(ps, fmt.Sprintf("%s:%s:%s", p.PermType, p.Key, p.RangeEnd))
		}
		eqStr("role-get-own-perms", "READWRITE:a/:a0 READ:ro/:ro0 WRITE:wo/:wo0", strings.Join(ps, " "))
	}
	_, err = alice.RoleGet(ctx, "root")
	errIs("role-get-other", rpctypes.ErrPermissionDenied, err)
	_, err = alice.UserList(ctx)
	errIs("user-list", rpctypes.ErrPermissionDenied, err)
	_, err = alice.RoleList(ctx)
	errIs("role-list", rpctypes.ErrPermissionDenied, err)
	_, err = alice.AuthDisable(ctx)
	errIs("auth-disable", rpctypes.ErrPermissionDenied, err)
	_, err = alice.UserChangePassword(ctx, "alice", "x")
	errIs("change-own-password", rpctypes.ErrPermissionDenied, err)
	_, err = alice.UserGrantRole(ctx, "alice", "root")
	errIs("grant-self-root", rpctypes.ErrPermissionDenied, err)
	bob := newClient("bob-connect", "bob", "bpw")
	defer bob.Close()
	_, err = get(bob, "a/1")
	errIs("no-role-get", rpctypes.ErrPermissionDenied, err)
	_, err = bob.UserGet(ctx, "bob")
	noErr("no-role-user-get-self", err)

	// root's auth errors while enabled
	_, err = root.UserDelete(ctx, "root")
	errIs("delete-root", rpctypes.ErrInvalidAuthMgmt, err)
	_, err = root.RoleDelete(ctx, "root")
	errIs("delete-root-role", rpctypes.ErrInvalidAuthMgmt, err)
	_, err = root.UserRevokeRole(ctx, "root", "root")
	errIs("revoke-root-role", rpctypes.ErrInvalidAuthMgmt, err)
	_, err = root.UserAdd(ctx, "alice", "x")
	errIs("user-add-duplicate", rpctypes.ErrUserAlreadyExist, err)
	_, err = root.UserGrantRole(ctx, "alice", "nosuch")
	errIs("grant-unknown-role", rpctypes.ErrRoleNotFound, err)
	_, err = root.UserRevokeRole(ctx, "bob", "app")
	errIs("revoke-not-granted", rpctypes.ErrRoleNotGranted, err)
	_, err = root.RoleRevokePermission(ctx, "app", "zz", "")
	errIs("revoke-permission-not-granted", rpctypes.ErrPermissionNotGranted, err)
	_, err = root.UserGet(ctx, "nosuch")
	errIs("user-get-unknown", rpctypes.ErrUserNotFound, err)
	_, err = root.UserAdd(ctx, "", "x")
	errIs("user-add-empty", rpctypes.ErrUserEmpty, err)
	_, err = root.RoleAdd(ctx, "")
	errIs("role-add-empty", rpctypes.ErrRoleEmpty, err)

	// raw gRPC: tokens and status codes
	rw := dialRaw(endpoints)
	defer rw.conn.Close()
	ar, err := rw.authenticate("alice", "apw")
	if !noErr("raw-authenticate", err) {
		done()
	}
	tok := ar.Token
	check("raw-simple-token-format", simpleTokenRE.MatchString(tok), "not <16 letters>.<index>", "token: "+tok)
	check("raw-authenticate-header", ar.Header != nil && ar.Header.ClusterId != 0 && ar.Header.MemberId != 0 && ar.Header.RaftTerm != 0,
		"header ids / term missing", fmt.Sprintf("header: %v", ar.Header))
	ar2, err := rw.authenticate("alice", "apw")
	if noErr("raw-authenticate-again", err) {
		check("raw-tokens-differ", ar2.Token != tok, "same token twice", "token: "+tok)
	}
	rresp, err := rw.rangeKey(tok, "a/1")
	if noErr("raw-get-with-token", err) {
		check("raw-get-with-token-value", len(rresp.Kvs) == 1 && string(rresp.Kvs[0].Value) == "v2", "wrong kvs", fmt.Sprintf("%v", rresp.Kvs))
	}
	_, err = rw.rangeKey(tok, "b/1")
	grpcErr("raw-get-outside", err, "PermissionDenied", eDenied)
	_, err = rw.putKey(tok, "ro/1", "x")
	grpcErr("raw-put-read-only", err, "PermissionDenied", eDenied)
	_, err = rw.rangeKey("", "a/1")
	grpcErr("raw-no-token", err, "InvalidArgument", eUserEmpty)
	_, err = rw.rangeKey("bogus", "a/1")
	grpcErr("raw-bogus-token", err, "Unauthenticated", eInvalidTok)
	_, err = rw.rangeKey(tok+"x", "a/1")
	grpcErr("raw-altered-token", err, "Unauthenticated", eInvalidTok)
	_, err = rw.putKey("bogus", "a/1", "x")
	grpcErr("raw-put-bogus-token", err, "Unauthenticated", eInvalidTok)
	_, err = rw.userList(tok)
	grpcErr("raw-user-list-by-user", err, "PermissionDenied", eDenied)
	_, err = rw.userList("")
	grpcErr("raw-user-list-no-token", err, "InvalidArgument", eUserEmpty)
	rtok := rw.token("root-token", "root", rootPW)
	ul, err := rw.userList(rtok)
	if noErr("raw-user-list-root", err) {
		eqStr("raw-user-list-root-users", "alice,bob,carol,root", strings.Join(ul.Users, ","))
	}
	_, err = rw.authenticate("alice", "wrong")
	grpcErr("raw-wrong-password", err, "InvalidArgument", eAuthFailed)
	_, err = rw.authenticate("nosuch", "x")
	grpcErr("raw-unknown-user", err, "InvalidArgument", eAuthFailed)
	_, err = rw.authenticate("", "")
	grpcErr("raw-empty-user", err, "InvalidArgument", eAuthFailed)
	_, err = rw.authenticate("carol", "x")
	grpcErr("raw-no-password-user", err, "Unknown", eNoPwUser)
	_, err = rw.authenticate("carol", "")
	grpcErr("raw-no-password-user-empty-password", err, "Unknown", eNoPwUser)
	done()
}

// ------------------------------------------------------------------ (b) watch

// nextEvents waits (bounded) for the next response on ch; returns "PUT key=value ..." or
// a description of what came instead.
func nextEvents(ch clientv3.WatchChan, bound time.Duration) string {
	select {
	case wr, open := <-ch:
		if !open {
			return "<channel closed>"
		}
		if wr.Canceled || wr.Err() != nil {
			return fmt.Sprintf("<canceled: %v>", wr.Err())
		}
		var s []string
		for _, ev := range wr.Events {
			s = append(s, fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value))
		}
		return strings.Join(s, " ")
	case <-time.After(bound):
		return "<nothing within " + bound.String() + ">"
	}
}

func cmdWatch() {
	alice := newClient("alice-connect", "alice", "apw")
	defer alice.Close()
	root := newClient("root-connect", "root", rootPW)
	defer root.Close()
	ctx, cancel := tctx()
	defer cancel()

	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(context.Background()))
	defer wcancel()
	rr, err := get(root, "a/")
	must("root-get", err)
	start := rr.Header.Revision + 1
	// from an explicit revision, so that no event can be missed before the watch is registered
	ch := alice.Watch(wctx, "a/", clientv3.WithPrefix(), clientv3.WithRev(start))
	must("root-put-1", put(root, "a/w", "1"))
	eqStr("permitted-prefix-event", "PUT a/w=1", nextEvents(ch, 10*time.Second))

	_, err = root.RoleRevokePermission(ctx, "app", "a/", clientv3.GetPrefixRangeEnd("a/"))
	must("revoke-a", err)
	must("root-put-2", put(root, "a/w", "2"))
	// etcd checks a watch's permission once, when it is created: the open watch goes on
	eqStr("open-watch-after-revoke", "PUT a/w=2", nextEvents(ch, 10*time.Second))
	_, err = get(alice, "a/w")
	errIs("get-after-revoke", rpctypes.ErrPermissionDenied, err)

	// a new watch is refused: canceled at creation, then closed. etcd's cancel_reason is
	// the whole gRPC status text of ErrGRPCPermissionDenied ("rpc error: code = ..."),
	// which clientv3 cannot map back: Err() is not rpctypes.ErrPermissionDenied.
	ch2 := alice.Watch(wctx, "a/", clientv3.WithPrefix())
	select {
	case wr, open := <-ch2:
		if check("new-watch-after-revoke-response", open, "channel closed without a response") {
			check("new-watch-after-revoke-canceled", wr.Canceled, "not canceled", fmt.Sprintf("response: %+v", wr))
			eqStr("new-watch-after-revoke-err", wireDenied, fmt.Sprint(wr.Err()))
			check("new-watch-after-revoke-err-not-rpctypes", wr.Err() != rpctypes.ErrPermissionDenied, "Err() == rpctypes.ErrPermissionDenied")
			check("new-watch-after-revoke-no-events", len(wr.Events) == 0, "events on a refused watch")
		}
	case <-time.After(10 * time.Second):
		notOK("new-watch-after-revoke-response", "no response within 10 s")
	}
	select {
	case _, open := <-ch2:
		check("new-watch-after-revoke-closed", !open, "second response on a refused watch")
	case <-time.After(10 * time.Second):
		notOK("new-watch-after-revoke-closed", "channel not closed within 10 s")
	}
	// the first watch still works on the same client
	must("root-put-3", put(root, "a/w", "3"))
	eqStr("open-watch-still-after-refused-one", "PUT a/w=3", nextEvents(ch, 10*time.Second))

	_, err = root.RoleGrantPermission(ctx, "app", "a/", clientv3.GetPrefixRangeEnd("a/"), clientv3.PermissionType(clientv3.PermReadWrite))
	must("regrant-a", err)

	// raw streams
	rw := dialRaw(endpoints)
	defer rw.conn.Close()
	tok := rw.token("alice-token", "alice", "apw")
	cur, err := get(root, "a/")
	must("root-get-rev", err)
	resp, st, scancel, err := rw.watchCreate(tok, "b/", true)
	if noErr("raw-forbidden-create", err) {
		eqStr("raw-forbidden-response", fmt.Sprintf("created=true canceled=true id=-1 reason=%q rev=%d events=0", wireDenied, cur.Header.Revision),
			fmt.Sprintf("created=%v canceled=%v id=%d reason=%q rev=%d events=%d", resp.Created, resp.Canceled, resp.WatchId, resp.CancelReason, resp.Header.GetRevision(), len(resp.Events)))
		// the same stream goes on: a permitted watch gets id 0 (the refused one used none)
		creq := &pb.WatchCreateRequest{Key: []byte("a/"), RangeEnd: []byte("a0")}
		err = st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: creq}})
		must("raw-send", err)
		r2, err := st.Recv()
		if noErr("raw-permitted-after-refused", err) {
			eqStr("raw-permitted-after-refused-response", "created=true canceled=false id=0",
				fmt.Sprintf("created=%v canceled=%v id=%d", r2.Created, r2.Canceled, r2.WatchId))
		}
		must("root-put-4", put(root, "a/w", "4"))
		r3, err := st.Recv()
		if noErr("raw-permitted-event", err) {
			var evs []string
			for _, ev := range r3.Events {
				evs = append(evs, fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value))
			}
			eqStr("raw-permitted-event-value", "id=0 PUT a/w=4", fmt.Sprintf("id=%d %s", r3.WatchId, strings.Join(evs, " ")))
		}
		scancel()
	}
	resp, _, scancel, err = rw.watchCreate("", "a/", true)
	if noErr("raw-no-token-create", err) {
		eqStr("raw-no-token-response", fmt.Sprintf("created=true canceled=true id=-1 reason=%q", "rpc error: code = InvalidArgument desc = "+eUserEmpty),
			fmt.Sprintf("created=%v canceled=%v id=%d reason=%q", resp.Created, resp.Canceled, resp.WatchId, resp.CancelReason))
		scancel()
	}
	resp, _, scancel, err = rw.watchCreate("bogus", "a/", true)
	if noErr("raw-bogus-token-create", err) {
		eqStr("raw-bogus-token-response", fmt.Sprintf("created=true canceled=true id=-1 reason=%q", "rpc error: code = Unauthenticated desc = "+eInvalidTok),
			fmt.Sprintf("created=%v canceled=%v id=%d reason=%q", resp.Created, resp.Canceled, resp.WatchId, resp.CancelReason))
		scancel()
	}
	done()
}

// ------------------------------------------------------------------ (c) rolechange

func cmdRoleChange(jwtMode bool) {
	alice := newClient("alice-connect", "alice", "apw")
	defer alice.Close()
	root := newClient("root-connect", "root", rootPW)
	defer root.Close()
	ctx, cancel := tctx()
	defer cancel()
	rw := dialRaw(endpoints)
	defer rw.conn.Close()

	noErr("put-before", put(alice, "a/rc", "0"))
	oldTok := rw.token("alice-token", "alice", "apw")
	_, err := rw.putKey(oldTok, "a/rc", "raw0")
	noErr("raw-put-before", err)

	_, err = root.RoleAdd(ctx, "extra")
	must("role-add-extra", err)
	_, err = root.RoleGrantPermission(ctx, "extra", "x/", clientv3.GetPrefixRangeEnd("x/"), clientv3.PermissionType(clientv3.PermReadWrite))
	must("grant-extra", err)
	_, err = root.UserGrantRole(ctx, "alice", "extra")
	must("grant-role-extra", err)

	// the same client, after the auth revision moved: its writes go on, and the new
	// role counts at once
	noErr("put-after-role-change", put(alice, "a/rc", "1"))
	noErr("put-new-permission", put(alice, "x/1", "1"))
	eqStr("new-permission-value", "1", value(alice, "x/1"))
	_, err = rw.putKey(oldTok, "a/rc", "raw1")
	if jwtMode {
		// a JWT carries the auth revision it was made at
		grpcErr("raw-old-token-after-role-change", err, "InvalidArgument", eOldRevision)
		_, err = rw.rangeKey(oldTok, "a/rc")
		grpcErr("raw-old-token-range-after-role-change", err, "InvalidArgument", eOldRevision)
	} else {
		// a simple token is checked against the auth revision current when it is used
		noErr("raw-old-token-after-role-change", err)
	}

	_, err = root.UserRevokeRole(ctx, "alice", "extra")
	must("revoke-role-extra", err)
	errIs("put-after-role-revoked", rpctypes.ErrPermissionDenied, put(alice, "x/2", "2"))
	noErr("put-own-role-after-revoke", put(alice, "a/rc", "2"))
	_, err = root.RoleDelete(ctx, "extra")
	must("role-delete-extra", err)

	// password changed under an open client: its token is dropped (simple) / stale
	// (jwt); clientv3 re-authenticates with the old password, which fails
	_, err = root.UserAdd(ctx, "dora", "dpw")
	must("user-add-dora", err)
	_, err = root.UserGrantRole(ctx, "dora", "app")
	must("grant-dora", err)
	dora := newClient("dora-connect", "dora", "dpw")
	defer dora.Close()
	noErr("dora-put", put(dora, "a/dora", "1"))
	doraTok := rw.token("dora-token", "dora", "dpw")
	_, err = root.UserChangePassword(ctx, "dora", "dpw2")
	must("passwd-dora", err)
	errIs("put-after-password-change", rpctypes.ErrAuthFailed, put(dora, "a/dora", "2"))
	_, err = rw.rangeKey(doraTok, "a/dora")
	if jwtMode {
		grpcErr("raw-token-after-password-change", err, "InvalidArgument", eOldRevision)
	} else {
		grpcErr("raw-token-after-password-change", err, "Unauthenticated", eInvalidTok)
	}
	dora2 := newClient("dora-new-password", "dora", "dpw2")
	defer dora2.Close()
	noErr("new-password-client", put(dora2, "a/dora", "3"))

	// user deleted under an open client
	doraTok = rw.token("dora-token-2", "dora", "dpw2")
	_, err = root.UserDelete(ctx, "dora")
	must("user-delete-dora", err)
	errIs("put-after-user-deleted", rpctypes.ErrAuthFailed, put(dora2, "a/dora", "4"))
	_, err = rw.rangeKey(doraTok, "a/dora")
	if jwtMode {
		grpcErr("raw-token-after-user-deleted", err, "InvalidArgument", eOldRevision)
	} else {
		grpcErr("raw-token-after-user-deleted", err, "Unauthenticated", eInvalidTok)
	}
	eqStr("deleted-user-wrote-nothing", "3", value(root, "a/dora"))
	done()
}

// ------------------------------------------------------------------ (d) ttl

func cmdTTL() {
	alice := newClient("alice-connect", "alice", "apw")
	defer alice.Close()
	rw := dialRaw(endpoints)
	defer rw.conn.Close()

	noErr("put", put(alice, "a/ttl", "1"))
	tok := rw.token("alice-token", "alice", "apw")
	_, err := rw.rangeKey(tok, "a/ttl")
	noErr("raw-fresh-token", err)

	// a token in use stays valid past the TTL (every use restarts it)
	kept := rw.token("alice-token-kept", "alice", "apw")
	var keptErr error
	for i := 0; i < 10; i++ { // 10 x 0.4 s = 4 s > TTL 2 s
		time.Sleep(400 * time.Millisecond)
		if _, keptErr = rw.rangeKey(kept, "a/ttl"); keptErr != nil {
			break
		}
	}
	noErr("raw-token-kept-alive-by-use", keptErr)

	// idle for 5 s (TTL 2 s, checked every second): expired
	time.Sleep(5 * time.Second)
	_, err = rw.rangeKey(tok, "a/ttl")
	grpcErr("raw-expired-token", err, "Unauthenticated", eInvalidTok)
	_, err = rw.putKey(tok, "a/ttl", "x")
	grpcErr("raw-expired-token-put", err, "Unauthenticated", eInvalidTok)
	// clientv3 gets "invalid auth token", authenticates again and retries
	eqStr("idle-client-get", "1", value(alice, "a/ttl"))
	noErr("idle-client-put", put(alice, "a/ttl", "2"))
	done()
}

// ------------------------------------------------------------------ (e) wrongpw

func cmdWrongPW() {
	for _, c := range []struct{ name, user, pw string }{
		{"wrong-password", "alice", "wrong"},
		{"unknown-user", "nosuch", "x"},
	} {
		cli, err := newClientErr(endpoints, c.user, c.pw)
		if cli != nil {
			cli.Close()
		}
		// clientv3.New authenticates at once and fails
		errIs(c.name+"-at-new", rpctypes.ErrAuthFailed, err)
		check(c.name+"-no-client", cli == nil, "clientv3.New returned a client")
	}
	cli, err := newClientErr(endpoints, "carol", "x")
	if cli != nil {
		cli.Close()
	}
	eqStr("no-password-user-at-new",
		"rpc error: code = Unknown desc = "+eNoPwUser, fmt.Sprint(err))
	// a user without a password: clientv3 does not authenticate at all
	cli, err = newClientErr(endpoints, "alice", "")
	if noErr("empty-password-new", err) {
		_, err = get(cli, "a/1")
		errIs("empty-password-get", rpctypes.ErrUserEmpty, err)
		cli.Close()
	}
	done()
}

// ------------------------------------------------------------------ (f) jwt

func b64seg(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

func cmdJWT() {
	rw := dialRaw(endpoints)
	defer rw.conn.Close()
	alice := newClient("alice-connect", "alice", "apw")
	defer alice.Close()
	noErr("client-put", put(alice, "a/jwt", "1"))

	t0 := time.Now()
	tok := rw.token("alice-token", "alice", "apw")
	parts := strings.Split(tok, ".")
	if !check("token-three-parts", len(parts) == 3, "not header.claims.signature", "token: "+tok) {
		done()
	}
	hb, err1 := b64seg(parts[0])
	cb, err2 := b64seg(parts[1])
	var hdr, claims map[string]interface{}
	if check("token-base64url", err1 == nil && err2 == nil && json.Unmarshal(hb, &hdr) == nil && json.Unmarshal(cb, &claims) == nil,
		"header/claims not base64url JSON", "token: "+tok) {
		eqStr("token-header", `alg=RS256 typ=JWT`, fmt.Sprintf("alg=%v typ=%v", hdr["alg"], hdr["typ"]))
		var keys []string
		for k := range claims {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		eqStr("token-claim-names", "exp,revision,username", strings.Join(keys, ","))
		eqStr("token-claim-username", "alice", fmt.Sprint(claims["username"]))
		rev, _ := claims["revision"].(float64)
		check("token-claim-revision", rev > 0, "revision claim not > 0", fmt.Sprintf("claims: %s", cb))
		exp, _ := claims["exp"].(float64)
		d := int64(exp) - t0.Unix()
		check("token-claim-exp", d >= 1 && d <= 3, "exp not about now + 2 s", fmt.Sprintf("exp - now = %d s; claims: %s", d, cb))
	}
	_, err := rw.rangeKey(tok, "a/jwt")
	noErr("raw-token-works", err)
	_, err = rw.rangeKey(tok, "b/1")
	grpcErr("raw-token-permissions", err, "PermissionDenied", eDenied)

	// tampered: a signature changed, claims changed under the old signature, no signature
	sig := []byte(parts[2])
	i := len(sig) / 2
	if sig[i] == 'A' {
		sig[i] = 'B'
	} else {
		sig[i] = 'A'
	}
	_, err = rw.rangeKey(parts[0]+"."+parts[1]+"."+string(sig), "a/jwt")
	grpcErr("raw-tampered-signature", err, "Unauthenticated", eInvalidTok)
	forged := strings.Replace(string(cb), `"alice"`, `"root"`, 1)
	_, err = rw.rangeKey(parts[0]+"."+base64.RawURLEncoding.EncodeToString([]byte(forged))+"."+parts[2], "a/jwt")
	grpcErr("raw-tampered-claims", err, "Unauthenticated", eInvalidTok)
	_, err = rw.rangeKey(parts[0]+"."+parts[1]+".", "a/jwt")
	grpcErr("raw-no-signature", err, "Unauthenticated", eInvalidTok)
	none := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	_, err = rw.rangeKey(none+"."+parts[1]+".", "a/jwt")
	grpcErr("raw-alg-none", err, "Unauthenticated", eInvalidTok)

	// expiry: exp is in whole seconds, so ttl + 1.5 s is past it whatever the rounding
	time.Sleep(time.Until(t0.Add(3500 * time.Millisecond)))
	_, err = rw.rangeKey(tok, "a/jwt")
	grpcErr("raw-expired-token", err, "Unauthenticated", eInvalidTok)
	eqStr("client-after-expiry", "1", value(alice, "a/jwt"))
	noErr("client-put-after-expiry", put(alice, "a/jwt", "2"))
	done()
}

// ------------------------------------------------------------------ token / cluster

func cmdToken(user, pw string) {
	rw := dialRaw(endpoints)
	defer rw.conn.Close()
	resp, err := rw.authenticate(user, pw)
	if err != nil {
		fmt.Fprintf(os.Stderr, "authenticate: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(resp.Token)
}

func cmdCluster(key, want string, rounds int) {
	eps := strings.Split(endpoints, ",")
	rws := make([]*raw, len(eps))
	for i, ep := range eps {
		rws[i] = dialRaw(ep)
		defer rws[i].conn.Close()
	}
	for i := range eps {
		tok := rws[i].token(fmt.Sprintf("token-from-m%d", i+1), "alice", "apw")
		check(fmt.Sprintf("m%d-simple-token-format", i+1), simpleTokenRE.MatchString(tok), "not <16 letters>.<index>", "token: "+tok)
		for j := range eps {
			name := fmt.Sprintf("token-from-m%d-on-m%d", i+1, j+1)
			r, err := rws[j].rangeKey(tok, key)
			if noErr(name, err) {
				got := "<missing>"
				if len(r.Kvs) == 1 {
					got = string(r.Kvs[0].Value)
				}
				eqStr(name+"-value", want, got)
			}
			_, err = rws[j].rangeKey(tok, "b/1")
			grpcErr(name+"-permissions", err, "PermissionDenied", eDenied)
		}
	}
	// a fresh token used at once on another member: etcd serves a linearizable Range
	// only after the member applied everything committed before it (the Authenticate
	// entry included), so the token is always known there. Many rounds, one check per
	// pair of members.
	for i := range eps {
		for j := range eps {
			var bad []string
			for round := 0; round < rounds; round++ {
				tok := rws[i].token(fmt.Sprintf("round-token-from-m%d", i+1), "alice", "apw")
				if _, err := rws[j].rangeKey(tok, key); err != nil {
					bad = append(bad, fmt.Sprintf("round %d: %v", round+1, err))
				}
			}
			check(fmt.Sprintf("fresh-token-from-m%d-at-once-on-m%d-x%d", i+1, j+1, rounds), len(bad) == 0,
				fmt.Sprintf("%d of %d fresh tokens refused", len(bad), rounds), strings.Join(bad, "\n"))
		}
	}
	for j := range eps {
		_, err := rws[j].rangeKey("bogus", key)
		grpcErr(fmt.Sprintf("bogus-token-on-m%d", j+1), err, "Unauthenticated", eInvalidTok)
	}
	// clientv3 over all members
	cli := newClient("alice-all-members", "alice", "apw")
	defer cli.Close()
	eqStr("client-all-members", want, value(cli, key))
	done()
}

// ------------------------------------------------------------------ main

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: authcheck enable|client|watch|rolechange|ttl|wrongpw|jwt|token|cluster -endpoints E ...")
		os.Exit(2)
	}
	sub = os.Args[1]
	fs := flag.NewFlagSet(sub, flag.ExitOnError)
	fs.StringVar(&endpoints, "endpoints", "127.0.0.1:2379", "comma list of endpoints")
	fs.StringVar(&rootPW, "rootpw", "rootpw", "root's password")
	jwtMode := fs.Bool("jwt", false, "rolechange: the server uses JWT tokens")
	user := fs.String("user", "", "token: user")
	password := fs.String("password", "", "token: password")
	key := fs.String("key", "a/1", "cluster: key to read")
	want := fs.String("want", "", "cluster: its expected value")
	rounds := fs.Int("rounds", 20, "cluster: fresh tokens per pair of members")
	as := fs.String("as", "", "report checks as authcheck/AS/NAME instead of authcheck/SUB/NAME")
	fs.Parse(os.Args[2:])
	cmd := sub
	if *as != "" {
		sub = *as
	}

	switch cmd {
	case "enable":
		cmdEnable()
	case "client":
		cmdClient()
	case "watch":
		cmdWatch()
	case "rolechange":
		cmdRoleChange(*jwtMode)
	case "ttl":
		cmdTTL()
	case "wrongpw":
		cmdWrongPW()
	case "jwt":
		cmdJWT()
	case "token":
		cmdToken(*user, *password)
	case "cluster":
		cmdCluster(*key, *want, *rounds)
	default:
		fmt.Fprintf(os.Stderr, "authcheck: unknown subcommand %q\n", cmd)
		os.Exit(2)
	}
}
