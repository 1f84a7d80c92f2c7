// tlscheck: the Go clientv3 SDK over mutual TLS against a server started with
// --cert-file/--key-file/--trusted-ca-file/--client-cert-auth: a put, a get and
// a watch with etcd's own transport.TLSInfo client config; the negotiated TLS
// version and ALPN protocol of a raw crypto/tls connection; and the refusals a
// Go client sees: no client certificate, and a server name the certificate does
// not cover.
//
// Prints "ok tlscheck/NAME" or "not ok tlscheck/NAME (reason)" per check; exits
// 1 if any check failed.
//
// Build (offline, Debian's etcd 3.4 sources):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o tlscheck .
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/pkg/logutil"
	"go.etcd.io/etcd/pkg/transport"
	"go.uber.org/zap"
)

var failures int

func ok(name string) { fmt.Printf("ok tlscheck/%s\n", name) }

func notOK(name, reason string) {
	failures++
	fmt.Printf("not ok tlscheck/%s (%s)\n", name, strings.ReplaceAll(reason, "\n", " "))
}

func check(name string, err error) bool {
	if err != nil {
		notOK(name, err.Error())
		return false
	}
	ok(name)
	return true
}

func client(ep string, info transport.TLSInfo) (*clientv3.Client, error) {
	cfg, err := info.ClientConfig()
	if err != nil {
		return nil, err
	}
	lc := logutil.DefaultZapLoggerConfig
	lc.Level = zap.NewAtomicLevelAt(zap.ErrorLevel)
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{ep},
		DialTimeout: 3 * time.Second,
		TLS:         cfg,
		LogConfig:   &lc,
	})
}

func main() {
	ep := flag.String("endpoint", "", "host:port of the server's https client URL")
	ca := flag.String("cacert", "", "CA certificate")
	cert := flag.String("cert", "", "client certificate")
	key := flag.String("key", "", "client key")
	flag.Parse()
	if *ep == "" || *ca == "" || *cert == "" || *key == "" {
		fmt.Fprintln(os.Stderr, "usage: tlscheck -endpoint H:P -cacert CA -cert CRT -key KEY")
		os.Exit(2)
	}
	full := transport.TLSInfo{CertFile: *cert, KeyFile: *key, TrustedCAFile: *ca}

	cli, err := client(*ep, full)
	if check("client-new", err) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		wch := cli.Watch(ctx, "tlscheck/", clientv3.WithPrefix())
		_, err = cli.Put(ctx, "tlscheck/k", "v-over-mtls")
		check("put", err)
		resp, err := cli.Get(ctx, "tlscheck/k")
		if err == nil && (len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v-over-mtls") {
			err = fmt.Errorf("got %v", resp.Kvs)
		}
		check("get", err)
		select {
		case wr := <-wch:
			if len(wr.Events) != 1 || string(wr.Events[0].Kv.Value) != "v-over-mtls" {
				err = fmt.Errorf("watch response %+v", wr)
			} else {
				err = wr.Err()
			}
		case <-ctx.Done():
			err = ctx.Err()
		}
		check("watch", err)
		cancel()
		cli.Close()
	}

	// The raw connection: TLS 1.2 or later, HTTP/2 through ALPN, as grpc-go asks.
	cfg, err := full.ClientConfig()
	if err == nil {
		cfg.NextProtos = []string{"h2"}
		var conn *tls.Conn
		conn, err = tls.Dial("tcp", *ep, cfg)
		if err == nil {
			st := conn.ConnectionState()
			if st.Version < tls.VersionTLS12 || st.NegotiatedProtocol != "h2" {
				err = fmt.Errorf("version %x, ALPN %q", st.Version, st.NegotiatedProtocol)
			}
			conn.Close()
		}
	}
	check("tls12-or-later-alpn-h2", err)

	// No client certificate: the server requires one.
	nocert, err := client(*ep, transport.TLSInfo{TrustedCAFile: *ca})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err = nocert.Put(ctx, "tlscheck/nocert", "x")
		cancel()
		nocert.Close()
		if err == nil {
			notOK("no-client-cert-refused", "the put succeeded")
		} else {
			ok("no-client-cert-refused")
		}
	} else {
		ok("no-client-cert-refused")
	}

	// A server name the server's certificate does not cover: the client refuses.
	bad := full
	bad.ServerName = "wrong.example.com"
	cfg, err = bad.ClientConfig()
	if err == nil {
		var conn *tls.Conn
		conn, err = tls.Dial("tcp", *ep, cfg)
		if err == nil {
			conn.Close()
			notOK("wrong-server-name-refused", "the handshake succeeded")
		} else if !strings.Contains(err.Error(), "wrong.example.com") {
			notOK("wrong-server-name-refused", "unexpected error: "+err.Error())
		} else {
			ok("wrong-server-name-refused")
		}
	} else {
		notOK("wrong-server-name-refused", err.Error())
	}
	if failures > 0 {
		os.Exit(1)
	}
}
