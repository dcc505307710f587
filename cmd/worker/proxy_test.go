package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/riposte-soar/riposte/internal/queue"
	"github.com/riposte-soar/riposte/internal/queue/queuetest"
)

// The vendors' HTTP clients and the standard proxy variables (docs/configuration.md), in the
// worker binary: Go reads HTTPS_PROXY, HTTP_PROXY and NO_PROXY once per process and never
// proxies a request to localhost or a loopback address, so the fakes are addressed by names
// under riposte.invalid. No resolver knows those (RFC 2606); only the test's proxy does.

const proxiedDomain = "riposte.invalid"

// The vendors' base-URL variables and the names they are given under proxiedDomain.
var proxiedVendors = []struct{ urlVar, name string }{
	{"HEC_BASE_URL", "hec"}, {"GZ_BASE_URL", "gz"}, {"PVWA_BASE_URL", "pvwa"},
}

// forwardProxy is an HTTP proxy that knows the names under proxiedDomain: a request for
// hec.riposte.invalid:PORT, an absolute URL for plain HTTP or a CONNECT tunnel for HTTPS, goes
// to the loopback address routes gives for it. It records what it was asked for.
type forwardProxy struct {
	url    string
	routes map[string]string // host:port asked for → 127.0.0.1:port
	next   *http.Transport   // to the fakes, never through a proxy

	mu   sync.Mutex
	seen []string // "POST hec.riposte.invalid:41234", "CONNECT gz.riposte.invalid:40111"
}

func startForwardProxy(t *testing.T, routes map[string]string) *forwardProxy {
	t.Helper()
	p := &forwardProxy{routes: routes, next: &http.Transport{Proxy: nil}}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.next.CloseIdleConnections()
	})
	p.url = srv.URL
	return p
}

func (p *forwardProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// r.Host is the request line's authority: the CONNECT target, or the absolute URL's host.
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.Host)
	p.mu.Unlock()
	target, known := p.routes[r.Host]
	switch {
	case !known:
		http.Error(w, "test proxy: no route to "+r.Host, http.StatusBadGateway)
	case r.Method == http.MethodConnect:
		p.tunnel(w, target)
	case !r.URL.IsAbs():
		http.Error(w, "test proxy: the request line has no absolute URL: not a proxy request", http.StatusBadRequest)
	default:
		p.forward(w, r, target)
	}
}

// forward sends a plain HTTP request on to target, Host header unchanged.
func (p *forwardProxy) forward(w http.ResponseWriter, r *http.Request, target string) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Host = target
	out.Host = r.Host
	out.Header.Del("Proxy-Connection")
	resp, err := p.next.RoundTrip(out)
	if err != nil {
		http.Error(w, "test proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// tunnel connects the client to target and copies bytes both ways until both sides are done.
func (p *forwardProxy) tunnel(w http.ResponseWriter, target string) {
	up, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		http.Error(w, "test proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	conn, buf, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, buf); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(conn, up); closeWrite(conn); done <- struct{}{} }()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

// requests are what the proxy was asked for, in order.
func (p *forwardProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

// hosts are the hosts the proxy was asked for with method (CONNECT, or any other when
// connect is false), each once, sorted.
func (p *forwardProxy) hosts(connect bool) []string {
	var out []string
	for _, r := range p.requests() {
		method, host, _ := strings.Cut(r, " ")
		if (method == http.MethodConnect) == connect && !slices.Contains(out, host) {
			out = append(out, host)
		}
	}
	slices.Sort(out)
	return out
}

// renameVendors points each vendor's base URL (as startFakeVendors set it, or as tls serves it)
// at its name under proxiedDomain, same port and path, and returns the variables and the routes
// back to the loopback addresses.
func renameVendors(t *testing.T, fakes *fakeVendors, scheme string, addrs map[string]string) (env, routes map[string]string) {
	t.Helper()
	env, routes = map[string]string{}, map[string]string{}
	for _, v := range proxiedVendors {
		u, err := url.Parse(fakes.env[v.urlVar])
		if err != nil {
			t.Fatal(err)
		}
		loopback := u.Host
		if a, ok := addrs[v.urlVar]; ok {
			loopback = a
		}
		_, port, err := net.SplitHostPort(loopback)
		if err != nil {
			t.Fatal(err)
		}
		u.Scheme, u.Host = scheme, v.name+"."+proxiedDomain+":"+port
		env[v.urlVar] = u.String()
		routes[u.Host] = loopback
	}
	return env, routes
}

// proxiedHosts are the vendors' host:port under proxiedDomain in routes, sorted.
func proxiedHosts(routes map[string]string, names ...string) []string {
	var out []string
	for host := range routes {
		for _, n := range names {
			if strings.HasPrefix(host, n+"."+proxiedDomain+":") {
				out = append(out, host)
			}
		}
	}
	slices.Sort(out)
	return out
}

// credentialTheftChain publishes an alert that the shipped credential-theft-chain playbook
// answers with a call to each of the three vendors, and returns its outcome.
func credentialTheftChain(s *stack, id string) map[string]any {
	s.t.Helper()
	s.publish("soar.alerts.siem.credential-theft", id,
		`{"mailEntityId":"mail-77","endpointId":"ep-77","sha256":["`+chainSHA256+`"],"ptaEventId":"pta-1","account":"root@db01"}`, nil)
	return outcomeOf(s.t, s.await("SOAR_OUTCOMES", "soar.outcomes.credential-theft-chain"))
}

// checkChainDone fails unless every vendor did its part of the credential-theft chain.
func checkChainDone(t *testing.T, o map[string]any, f *fakeVendors) {
	t.Helper()
	if o["status"] != "succeeded" {
		t.Fatalf("outcome %v, want succeeded", o)
	}
	if f.hec.EntityState("mail-77") != "quarantined" || !f.gz.Isolated("ep-77") || !strings.EqualFold(f.pta.EventStatus("pta-1"), "open") {
		t.Errorf("HEC mail-77 %q, GravityZone ep-77 isolated %v, PTA pta-1 %q; want quarantined, true, open",
			f.hec.EntityState("mail-77"), f.gz.Isolated("ep-77"), f.pta.EventStatus("pta-1"))
	}
}

// startProxiedWorker runs the worker binary on the shipped playbooks with the vendors' fakes and
// extra, and a client stack on its NATS server. A delivery that fails is the alert's last, so
// its outcome, with the step's error, comes at once rather than after the redeliveries.
func startProxiedWorker(t *testing.T, fakes *fakeVendors, extra map[string]string) (*proc, *stack) {
	t.Helper()
	emb := queuetest.StartJetStream(t)
	env := map[string]string{
		"NATS_URL": emb.URL(), "RIPOSTE_PLAYBOOKS": shippedPlaybooks, "RIPOSTE_HTTP_ADDR": "", "RIPOSTE_MAX_DELIVER": "1",
	}
	for k, v := range extra {
		env[k] = v
	}
	p := startProcess(t, fakes.environ(env), "run")
	p.waitLog(t, `"msg":"worker ready"`)
	nc := queuetest.Connect(t, emb)
	return p, &stack{t: t, nc: nc, js: mustJetStream(t, nc), cfg: queue.DefaultConfig()}
}

// Plain HTTP vendors and HTTP_PROXY: every vendor's requests are absolute URLs sent to the
// proxy, and the response goes through.
func TestProcessVendorRequestsUseHTTPProxy(t *testing.T) {
	t.Parallel()
	fakes := startFakeVendors(t)
	env, routes := renameVendors(t, fakes, "http", nil)
	proxy := startForwardProxy(t, routes)
	env["HTTP_PROXY"] = proxy.url
	p, s := startProxiedWorker(t, fakes, env)

	checkChainDone(t, credentialTheftChain(s, "proxy-http-1"), fakes)
	checkEveryVendorProxied(t, proxy, routes, false)
	p.stop(t)
}

// checkEveryVendorProxied fails the test unless the proxy carried every vendor's requests, and
// all of them one way: through CONNECT tunnels (HTTPS vendors) or forwarded plain (HTTP ones).
func checkEveryVendorProxied(t *testing.T, proxy *forwardProxy, routes map[string]string, tunnelled bool) {
	t.Helper()
	carried, other := "forwarded requests for", "was asked to tunnel to %v for plain HTTP vendors"
	if tunnelled {
		carried, other = "tunnelled to", "was sent plain requests for %v by HTTPS vendors"
	}
	if got, want := proxy.hosts(tunnelled), proxiedHosts(routes, "hec", "gz", "pvwa"); !slices.Equal(got, want) {
		t.Errorf("the proxy %s %v, want every vendor's %v (all it saw: %v)", carried, got, want, proxy.requests())
	}
	if got := proxy.hosts(!tunnelled); len(got) > 0 {
		t.Errorf("the proxy "+other, got)
	}
}

// HTTPS vendors, each with its own CA (*_CA_CERT), and HTTPS_PROXY: every vendor's requests go
// through a CONNECT tunnel, TLS checked end to end against the vendor's name.
func TestProcessVendorRequestsUseHTTPSProxy(t *testing.T) {
	t.Parallel()
	fakes := startFakeVendors(t)
	cert, caFile := proxiedDomainCert(t)
	addrs := map[string]string{}
	for urlVar, h := range map[string]http.Handler{"HEC_BASE_URL": fakes.hec, "GZ_BASE_URL": fakes.gz, "PVWA_BASE_URL": fakes.pta} {
		srv := httptest.NewUnstartedServer(h)
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		srv.StartTLS()
		t.Cleanup(srv.Close)
		addrs[urlVar] = srv.Listener.Addr().String()
	}
	env, routes := renameVendors(t, fakes, "https", addrs)
	proxy := startForwardProxy(t, routes)
	env["HTTPS_PROXY"] = proxy.url
	env["HEC_CA_CERT"], env["GZ_CA_CERT"], env["PVWA_CA_CERT"] = caFile, caFile, caFile
	p, s := startProxiedWorker(t, fakes, env)

	checkChainDone(t, credentialTheftChain(s, "proxy-https-1"), fakes)
	checkEveryVendorProxied(t, proxy, routes, true)
	p.stop(t)
}

// NO_PROXY naming one vendor: that vendor is called directly, so its name under riposte.invalid
// does not resolve and its step fails saying so, while another vendor still goes through the
// proxy.
func TestProcessNoProxyBypassesTheProxy(t *testing.T) {
	t.Parallel()
	fakes := startFakeVendors(t)
	env, routes := renameVendors(t, fakes, "http", nil)
	proxy := startForwardProxy(t, routes)
	hecHost := "hec." + proxiedDomain
	env["HTTP_PROXY"], env["NO_PROXY"] = proxy.url, hecHost
	p, s := startProxiedWorker(t, fakes, env)

	s.publish("soar.alerts.gravityzone.incident", "noproxy-gz",
		`{"incidentId":"inc-9","incidentType":"extendedIncidents","severity":"critical","endpointId":"ep-9"}`, nil)
	if o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.gravityzone-incident-containment")); o["status"] != "succeeded" {
		t.Errorf("GravityZone outcome %v, want succeeded through the proxy", o)
	}
	s.publish("soar.alerts.checkpoint.phishing", "noproxy-hec", phishing("noproxy-hec", "ev-1", "ent-noproxy"), nil)
	o := outcomeOf(t, s.await("SOAR_OUTCOMES", "soar.outcomes.phishing-quarantine"))
	s.settled()
	steps, _ := o["steps"].([]any)
	if o["status"] != "failed" || len(steps) == 0 {
		t.Fatalf("HEC outcome %v, want failed: its name resolves nowhere but at the proxy", o)
	}
	event := steps[0].(map[string]any)
	// Whatever the resolver answers (no such host, or no answer at all), the worker looked the
	// name up itself: with a proxy, only the proxy would have.
	if e, _ := event["error"].(string); event["status"] != "failed" || !strings.Contains(e, "lookup "+hecHost) {
		t.Errorf("step %v: status %v, error %q; want failed on the lookup of %s", event["id"], event["status"], e, hecHost)
	}
	if got, want := proxy.hosts(false), proxiedHosts(routes, "gz"); !slices.Equal(got, want) {
		t.Errorf("the proxy was asked for %v, want only GravityZone's %v (all it saw: %v)", got, want, proxy.requests())
	}
	if n := len(fakes.hec.Requests()); n != 0 {
		t.Errorf("the fake HEC got %d requests; it should be unreachable without the proxy", n)
	}
	p.stop(t)
}

// proxiedDomainCert is a self-signed certificate for the vendors' names under proxiedDomain,
// and the path of its PEM file, which the vendors' *_CA_CERT trust.
func proxiedDomainCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range proxiedVendors {
		names = append(names, v.name+"."+proxiedDomain)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "riposte test vendors"},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "vendors-ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, file
}
