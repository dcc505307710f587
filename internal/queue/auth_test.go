package queue

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions/actiontest"
)

// Each NATS auth method of docs/configuration.md, against an in-process server that requires
// exactly that method: the right credentials connect, wrong or missing ones fail, and no
// failure repeats a secret.

// startAuthServer starts a server with opts (on a random loopback port, quiet) for the test.
func startAuthServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", server.RANDOM_PORT, true, true
	if opts.JetStream {
		opts.StoreDir = t.TempDir()
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(5 * time.Second) {
		srv.Shutdown()
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

type authCase struct {
	name   string
	url    string // srv.ClientURL() when empty
	auth   Auth
	wantOK bool
	errHas string // a fragment the failure must name, when set
}

// checkAuthCases connects with each case, one after the other, and checks none of the failures
// leaks any of secrets.
func checkAuthCases(t *testing.T, srv *server.Server, cases []authCase, secrets ...string) {
	t.Helper()
	for _, tc := range cases {
		url := tc.url
		if url == "" {
			url = srv.ClientURL()
		}
		nc, err := Connect(url, "auth-test", tc.auth, zap.NewNop())
		if nc != nil {
			if !nc.IsConnected() {
				t.Errorf("%s: Connect returned a connection that is not connected", tc.name)
			}
			nc.Close()
		}
		if (err == nil) != tc.wantOK {
			t.Errorf("%s: err = %v, want ok=%v", tc.name, redactAll(err, secrets), tc.wantOK)
		}
		if err != nil && tc.errHas != "" && !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(tc.errHas)) {
			t.Errorf("%s: error %q should mention %q", tc.name, redactAll(err, secrets), tc.errHas)
		}
		actiontest.NoSecrets(t, err, secrets...)
	}
}

func redactAll(err error, secrets []string) string {
	if err == nil {
		return "<nil>"
	}
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[SECRET]")
		}
	}
	return msg
}

// accountInfo proves the connection is usable past the handshake: JetStream answers for its account.
func accountInfo(t *testing.T, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Fatalf("JetStream account info: %v", err)
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// NATS_CREDS: operator mode, the user's JWT and seed in a .creds file, the account resolved
// from memory.
func TestConnectWithCredsFile(t *testing.T) {
	t.Parallel()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	operator, err := nkeys.CreateOperator()
	must(err)
	opPub, _ := operator.PublicKey()
	sysAcct, err := nkeys.CreateAccount()
	must(err)
	sysPub, _ := sysAcct.PublicKey()
	acct, err := nkeys.CreateAccount()
	must(err)
	acctPub, _ := acct.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(operator)
	must(err)
	opClaims, err := jwt.DecodeOperatorClaims(opJWT)
	must(err)
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(operator)
	must(err)
	ac := jwt.NewAccountClaims(acctPub)
	ac.Limits.JetStreamLimits.MemoryStorage = -1
	ac.Limits.JetStreamLimits.DiskStorage = -1
	acctJWT, err := ac.Encode(operator)
	must(err)
	resolver := &server.MemAccResolver{}
	must(resolver.Store(sysPub, sysJWT))
	must(resolver.Store(acctPub, acctJWT))

	// newUser issues a user of the account signed by signer.
	newUser := func(signer nkeys.KeyPair) (userJWT, seed string) {
		user, err := nkeys.CreateUser()
		must(err)
		pub, _ := user.PublicKey()
		s, _ := user.Seed()
		j, err := jwt.NewUserClaims(pub).Encode(signer)
		must(err)
		return j, string(s)
	}
	userJWT, userSeed := newUser(acct)
	stranger, err := nkeys.CreateAccount() // an account the operator never signed
	must(err)
	strangerJWT, strangerSeed := newUser(stranger)
	_, otherSeed := newUser(acct)

	dir := t.TempDir()
	creds := func(name, userJWT, seed string) string {
		b, err := jwt.FormatUserConfig(userJWT, []byte(seed))
		must(err)
		return writeFile(t, dir, name, b)
	}
	good := creds("user.creds", userJWT, userSeed)
	strangerCreds := creds("stranger.creds", strangerJWT, strangerSeed)
	goodBytes, _ := os.ReadFile(good)
	// The right JWT with another user's seed: the server's nonce check must fail.
	wrongSeed := writeFile(t, dir, "wrong-seed.creds", []byte(strings.Replace(string(goodBytes), userSeed, otherSeed, 1)))
	garbage := writeFile(t, dir, "garbage.creds", []byte("not-a-creds-file "+userJWT[:20]))

	srv := startAuthServer(t, &server.Options{
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		AccountResolver:  resolver,
		SystemAccount:    sysPub,
		JetStream:        true,
	})

	nc, err := Connect(srv.ClientURL(), "auth-test", Auth{CredsFile: good}, zap.NewNop())
	if err != nil {
		t.Fatalf("connect with creds: %v", redactAll(err, []string{userJWT, userSeed}))
	}
	accountInfo(t, nc)
	nc.Close()

	checkAuthCases(t, srv, []authCase{
		{name: "no credentials", errHas: "authorization"},
		{name: "user of an unknown account", auth: Auth{CredsFile: strangerCreds}, errHas: "authorization"},
		{name: "seed of another user", auth: Auth{CredsFile: wrongSeed}},
		{name: "garbage file", auth: Auth{CredsFile: garbage}},
		{name: "missing file", auth: Auth{CredsFile: filepath.Join(dir, "missing.creds")}, errHas: "no such file"},
		// The creds file wins over the other methods (it is first in Auth's order).
		{name: "creds before token", auth: Auth{CredsFile: good, Token: "ignored"}, wantOK: true},
	}, userJWT, userSeed, strangerJWT, strangerSeed, otherSeed, string(goodBytes))
}

// NATS_NKEY_SEED (and the nats CLI's NATS_NKEY): the seed or a seed file, against a server that
// knows the user only by public key, and usable for JetStream.
func TestConnectWithNKeyUsesJetStream(t *testing.T) {
	t.Parallel()
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	srv := startAuthServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}, JetStream: true})
	path := writeFile(t, t.TempDir(), "user.nk", append(seed, '\n'))
	for _, v := range []string{string(seed), path, "  " + string(seed) + "\n"} {
		nc, err := Connect(srv.ClientURL(), "auth-test", Auth{NKeySeed: v}, zap.NewNop())
		if err != nil {
			t.Fatalf("connect with nkey: %v", redactAll(err, []string{string(seed)}))
		}
		accountInfo(t, nc)
		nc.Close()
	}
	checkAuthCases(t, srv, []authCase{
		{name: "no credentials", errHas: "authorization"},
		{name: "token instead", auth: Auth{Token: "tok-not-an-nkey"}, errHas: "authorization"},
	}, string(seed))
}

// A value in NATS_NKEY_SEED that is not a user seed nor a readable file is refused before
// dialing, without being repeated: it may be a seed of another kind, or a mangled one.
func TestNKeyErrorsNameNoSeed(t *testing.T) {
	t.Parallel()
	acct, _ := nkeys.CreateAccount()
	acctSeed, _ := acct.Seed()
	user, _ := nkeys.CreateUser()
	userSeed, _ := user.Seed()
	dir := t.TempDir()
	acctFile := writeFile(t, dir, "account.nk", acctSeed)
	for name, v := range map[string]string{
		"account seed":        string(acctSeed),
		"quoted user seed":    `"` + string(userSeed) + `"`,
		"user seed cut short": string(userSeed[:40]),
		"account seed file":   acctFile,
		"missing file":        filepath.Join(dir, "missing.nk"),
	} {
		// Port 1 refuses at once, should Connect dial after all.
		_, err := Connect("nats://127.0.0.1:1", "auth-test", Auth{NKeySeed: v}, zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), "nkey seed") {
			t.Errorf("%s: err = %v, want an nkey seed error", name, redactAll(err, []string{string(acctSeed), string(userSeed[:40])}))
		}
		actiontest.NoSecrets(t, err, string(acctSeed), string(userSeed[:40]), string(acctSeed[:40]))
	}
}

// NATS_TOKEN, and a token in the URL.
func TestConnectWithToken(t *testing.T) {
	t.Parallel()
	const token = "tok-8c1f0a77e2d94b6f"
	const wrong = "tok-wrong-5e3b9c2a1d"
	srv := startAuthServer(t, &server.Options{Authorization: token})
	port := strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)
	checkAuthCases(t, srv, []authCase{
		{name: "token", auth: Auth{Token: token}, wantOK: true},
		{name: "token in the URL", url: "nats://" + token + "@127.0.0.1:" + port, wantOK: true},
		{name: "wrong token", auth: Auth{Token: wrong}, errHas: "authorization"},
		{name: "wrong token in the URL", url: "nats://" + wrong + "@127.0.0.1:" + port, errHas: "127.0.0.1:" + port},
		{name: "no token", errHas: "authorization"},
		{name: "user/password instead", auth: Auth{User: "riposte", Password: wrong}, errHas: "authorization"},
	}, token, wrong)
}

// NATS_USER / NATS_PASSWORD, and user:password in the URL, whose password never comes back.
func TestConnectWithUserPassword(t *testing.T) {
	t.Parallel()
	const password = "pw-3a9d7e1c5b"
	const wrong = "pw-wrong-6f2e8a"
	srv := startAuthServer(t, &server.Options{Username: "riposte", Password: password, JetStream: true})
	port := strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)

	nc, err := Connect(srv.ClientURL(), "auth-test", Auth{User: "riposte", Password: password}, zap.NewNop())
	if err != nil {
		t.Fatalf("connect with user/password: %v", redactAll(err, []string{password}))
	}
	accountInfo(t, nc)
	nc.Close()

	checkAuthCases(t, srv, []authCase{
		{name: "password in the URL", url: "nats://riposte:" + password + "@127.0.0.1:" + port, wantOK: true},
		{name: "wrong password", auth: Auth{User: "riposte", Password: wrong}, errHas: "authorization"},
		{name: "wrong user", auth: Auth{User: "someone", Password: password}, errHas: "authorization"},
		{name: "no password", auth: Auth{User: "riposte"}, errHas: "authorization"},
		{name: "nothing", errHas: "authorization"},
		// The error still says where and as whom it tried, with the password masked.
		{name: "wrong password in the URL", url: "nats://riposte:" + wrong + "@127.0.0.1:" + port, errHas: "riposte:xxxxx@127.0.0.1:" + port},
		{name: "wrong password in a server list", url: "nats://riposte:" + wrong + "@127.0.0.1:" + port + ",nats://riposte:" + password + "@127.0.0.1:1"},
	}, password, wrong)
}

// pki is a test CA with the certificates and keys it issued, as PEM files.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAFile string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{dir: t.TempDir(), ca: ca, caKey: key}
	p.CAFile = writeFile(t, p.dir, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	return p
}

// issue writes a certificate for 127.0.0.1 (server) or a client, and its key; it returns their paths.
func (p *pki) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writeFile(t, p.dir, name+".pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile = writeFile(t, p.dir, name+"-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	return certFile, keyFile
}

// startTLSServer starts a server whose certificate p issued; with clientCAs it also requires
// client certificates issued by that CA.
func startTLSServer(t *testing.T, p *pki, clientCAs string, opts *server.Options) *server.Server {
	t.Helper()
	cert, key := p.issue(t, "server", x509.ExtKeyUsageServerAuth)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: cert, KeyFile: key, CaFile: clientCAs, Verify: clientCAs != ""})
	if err != nil {
		t.Fatal(err)
	}
	opts.TLS, opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = true, tc, clientCAs != "", 2
	return startAuthServer(t, opts)
}

// NATS_CA: the server's certificate comes from a private CA; the worker trusts it only when told.
func TestConnectWithCustomCA(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "riposte test CA")
	other := newPKI(t, "some other CA")
	srv := startTLSServer(t, p, "", &server.Options{Username: "riposte", Password: "pw-tls-4d2c", JetStream: true})
	port := strconv.Itoa(srv.Addr().(*net.TCPAddr).Port)

	auth := Auth{CAFile: p.CAFile, User: "riposte", Password: "pw-tls-4d2c"}
	nc, err := Connect(srv.ClientURL(), "auth-test", auth, zap.NewNop())
	if err != nil {
		t.Fatalf("connect with the CA: %v", err)
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("connection is not TLS: %v", err)
	}
	accountInfo(t, nc)
	nc.Close()

	checkAuthCases(t, srv, []authCase{
		{name: "tls:// URL", url: "tls://127.0.0.1:" + port, auth: auth, wantOK: true},
		{name: "system roots only", auth: Auth{User: "riposte", Password: "pw-tls-4d2c"}, errHas: "certificate"},
		{name: "another CA", auth: Auth{CAFile: other.CAFile, User: "riposte", Password: "pw-tls-4d2c"}, errHas: "certificate"},
		{name: "missing CA file", auth: Auth{CAFile: filepath.Join(p.dir, "missing.pem"), User: "riposte", Password: "pw-tls-4d2c"}},
		{name: "CA but wrong password", auth: Auth{CAFile: p.CAFile, User: "riposte", Password: "pw-wrong-77"}, errHas: "authorization"},
	}, "pw-tls-4d2c", "pw-wrong-77")
}

// NATS_CERT / NATS_KEY: the server requires a client certificate from its CA.
func TestConnectWithMutualTLS(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "riposte test CA")
	other := newPKI(t, "some other CA")
	srv := startTLSServer(t, p, p.CAFile, &server.Options{})
	cert, key := p.issue(t, "worker", x509.ExtKeyUsageClientAuth)
	strangerCert, strangerKey := other.issue(t, "stranger", x509.ExtKeyUsageClientAuth)
	keyPEM, _ := os.ReadFile(key)
	keySecret := strings.TrimSpace(strings.Split(string(keyPEM), "\n")[1]) // a line of the key itself

	nc, err := Connect(srv.ClientURL(), "auth-test", Auth{CAFile: p.CAFile, CertFile: cert, KeyFile: key}, zap.NewNop())
	if err != nil {
		t.Fatalf("connect with a client certificate: %v", err)
	}
	state, err := nc.TLSConnectionState()
	if err != nil || len(state.PeerCertificates) == 0 {
		t.Errorf("TLS state = %v, %v", state, err)
	}
	nc.Close()

	checkAuthCases(t, srv, []authCase{
		{name: "no client certificate", auth: Auth{CAFile: p.CAFile}},
		{name: "certificate of another CA", auth: Auth{CAFile: p.CAFile, CertFile: strangerCert, KeyFile: strangerKey}},
		{name: "certificate with another's key", auth: Auth{CAFile: p.CAFile, CertFile: cert, KeyFile: strangerKey}},
		// Refused by Connect itself, before dialing: not a TLS error from the server.
		{name: "certificate without key", auth: Auth{CAFile: p.CAFile, CertFile: cert}, errHas: "NATS_CERT and NATS_KEY"},
		{name: "key without certificate", auth: Auth{CAFile: p.CAFile, KeyFile: key}, errHas: "NATS_CERT and NATS_KEY"},
	}, keySecret)
}
