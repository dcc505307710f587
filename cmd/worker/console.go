package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/riposte-soar/riposte/internal/queue"
)

// The web console (docs/console.md) on the worker's HTTP listener, at /console: the approvals
// that wait, with approve and deny; recent outcomes; dead letters, with replay. Pages are
// rendered on the server from the templates under console/, forms are plain forms answered
// with a redirect (POST-redirect-GET): no script, and nothing but the worker's own stylesheet.
// The decisions and replays are those of `worker approve`, `worker deny` and `worker dlq
// replay SEQ`, through the same code.

//go:embed console/*.html console/*.css
var consoleFiles embed.FS

// consoleSettings are the console's flags and the HTTP listener's TLS, and what finish makes
// of them.
type consoleSettings struct {
	enabled    bool
	tokensFile string
	tlsCert    string
	tlsKey     string
	clientCA   string

	users []consoleUser // read from tokensFile
	tls   *tls.Config   // nil: plain HTTP
}

// consoleUser is one line of the tokens file: the token signs the operator in, the name goes
// into their decisions.
type consoleUser struct{ name, token string }

const (
	minConsoleToken = 16  // characters: a token is a secret, not a password to remember
	maxOperatorName = 200 // bytes, as a decision's "by"
	consoleSession  = 12 * time.Hour
)

func (c *consoleSettings) mtls() bool { return c.tls != nil && c.tls.ClientCAs != nil }

// authName says how operators authenticate, for the start-up log line.
func (c *consoleSettings) authName() string {
	switch {
	case !c.enabled:
		return ""
	case len(c.users) > 0 && c.mtls():
		return "tokens or client certificates"
	case len(c.users) > 0:
		return "tokens"
	case c.mtls():
		return "client certificates"
	}
	return "none: a name typed on a loopback address"
}

// finish reads the TLS files and the tokens file and checks that the console can be served:
// off a loopback address only to operators who authenticate. It reports every problem at once,
// and returns the settings that work but are likely a mistake. No error quotes a token.
func (c *consoleSettings) finish(httpAddr string) (warnings []string, _ error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	c.tokensFile, c.tlsCert, c.tlsKey, c.clientCA = strings.TrimSpace(c.tokensFile), strings.TrimSpace(c.tlsCert), strings.TrimSpace(c.tlsKey), strings.TrimSpace(c.clientCA)
	c.users, c.tls = nil, nil
	switch {
	case (c.tlsCert == "") != (c.tlsKey == ""):
		bad("--http-tls-cert and --http-tls-key go together: set both, or neither")
	case c.tlsCert != "":
		cert, err := tls.LoadX509KeyPair(c.tlsCert, c.tlsKey)
		if err != nil {
			bad("--http-tls-cert %q and --http-tls-key %q: %v", c.tlsCert, c.tlsKey, err)
			break
		}
		c.tls = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if c.clientCA != "" {
		pool, err := readCAPool(c.clientCA)
		switch {
		case c.tlsCert == "":
			bad("--http-client-ca needs --http-tls-cert and --http-tls-key: client certificates are only asked for over HTTPS")
		case err != nil:
			bad("--http-client-ca %q: %v", c.clientCA, err)
		case c.tls != nil:
			// Asked for, not required: Prometheus, the probes and `worker healthcheck` connect
			// without one, and the console refuses any request that did not present a valid one.
			c.tls.ClientCAs, c.tls.ClientAuth = pool, tls.VerifyClientCertIfGiven
		}
	}
	if c.tokensFile != "" {
		users, warning, err := readConsoleTokens(c.tokensFile)
		if err != nil {
			errs = append(errs, err)
		}
		if warning != "" {
			warnings = append(warnings, warning)
		}
		c.users = users
	}
	if !c.enabled {
		if c.tokensFile != "" || c.clientCA != "" {
			warnings = append(warnings, "--console-tokens or --http-client-ca is set but --console is not: the console is off")
		}
		return warnings, errors.Join(errs...)
	}
	loopback := loopbackAddr(httpAddr)
	switch {
	case httpAddr == "":
		bad("--console needs --http-addr: the console is served on the worker's HTTP listener, which is disabled")
	case !loopback && c.tokensFile == "" && c.clientCA == "":
		bad("--console on --http-addr %q, which is not a loopback address, needs operators to authenticate: give --console-tokens FILE, "+
			"or --http-client-ca with --http-tls-cert and --http-tls-key (or listen on 127.0.0.1 only)", httpAddr)
	case !loopback && c.tokensFile != "" && c.tlsCert == "":
		warnings = append(warnings, fmt.Sprintf("console tokens cross the network in clear on --http-addr %q: serve HTTPS with --http-tls-cert and --http-tls-key, or put a TLS proxy in front", httpAddr))
	}
	return warnings, errors.Join(errs...)
}

// loopbackAddr says an address listens on loopback only: 127.0.0.0/8, ::1 or localhost. An
// empty host (every interface) or any other name is not.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readCAPool reads a PEM file of CA certificates.
func readCAPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}

// readConsoleTokens reads the tokens file: one "name token" per line, blank lines and lines
// starting with # ignored. Its problems name the line, never its text: a token may be on it.
func readConsoleTokens(path string) (users []consoleUser, warning string, _ error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("--console-tokens: %w", err)
	}
	var errs []error
	names, tokens := map[string]bool{}, map[string]bool{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		at := fmt.Sprintf("--console-tokens %s:%d", path, i+1)
		f := strings.Fields(line)
		switch {
		case len(f) != 2:
			errs = append(errs, fmt.Errorf("%s: want \"name token\", got %d fields", at, len(f)))
		case !validOperator(f[0]):
			errs = append(errs, fmt.Errorf("%s: a name is printable, at most %d bytes", at, maxOperatorName))
		case len(f[1]) < minConsoleToken:
			errs = append(errs, fmt.Errorf("%s: the token of %q is shorter than %d characters", at, f[0], minConsoleToken))
		case names[strings.ToLower(f[0])]: // approvals compare names without case
			errs = append(errs, fmt.Errorf("%s: %q is named twice", at, f[0]))
		case tokens[f[1]]:
			errs = append(errs, fmt.Errorf("%s: the token of %q is another operator's too", at, f[0]))
		default:
			names[strings.ToLower(f[0])], tokens[f[1]] = true, true
			users = append(users, consoleUser{name: f[0], token: f[1]})
		}
	}
	if len(users) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("--console-tokens %s: no operator in it (one \"name token\" per line)", path))
	}
	if info, err := os.Stat(path); err == nil && info.Mode().Perm()&0o004 != 0 {
		warning = fmt.Sprintf("--console-tokens %s can be read by every user of the host (mode %04o): chmod 600 it", path, info.Mode().Perm())
	}
	return users, warning, errors.Join(errs...)
}

// validOperator says a name can decide: printable, no spaces at its ends, at most 200 bytes.
func validOperator(name string) bool {
	if name == "" || len(name) > maxOperatorName || strings.TrimSpace(name) != name {
		return false
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// probeClient is what `worker healthcheck` asks /readyz with: plain HTTP, or, given the
// worker's --http-tls-cert, HTTPS trusting exactly that certificate, whatever names it was
// issued for (the probe dials 127.0.0.1). Only /readyz is asked: no client certificate needed.
func probeClient(certFile string) (*http.Client, string, error) {
	if certFile == "" {
		return http.DefaultClient, "http", nil
	}
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, "", fmt.Errorf("--http-tls-cert: %w", err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, "", fmt.Errorf("--http-tls-cert %s: no PEM certificate in it", certFile)
	}
	pinned := block.Bytes
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and name checks are replaced by the pin: the leaf must be this one.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], pinned) {
				return errors.New("the server's certificate is not the one in --http-tls-cert")
			}
			return nil
		},
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, "https", nil
}

// httpExtras are what the worker's HTTP listener serves beyond health and metrics.
type httpExtras struct {
	tls     *tls.Config  // HTTPS; nil: plain HTTP
	console http.Handler // /console; nil: off
	pprof   bool         // /debug/pprof/
}

// httpExtras are the listener's TLS and, with --console, the console.
func (w *worker) httpExtras() httpExtras {
	c := &w.settings.console
	x := httpExtras{tls: c.tls, pprof: w.settings.pprof}
	if c.enabled {
		con := newConsole(c, w.log.Named("console"), w.consoleDeps)
		w.console.Store(con)
		x.console = con
	}
	return x
}

// consoleDeps is what the console reads and decides with: the worker's connection, approvals
// and stream names, once run has them.
type consoleDeps struct {
	js        jetstream.JetStream
	cfg       queue.Config
	approvals *queue.Approvals
}

var errConsoleStarting = errors.New("the worker is still starting: its streams and approvals are not open yet; reload the page in a moment")

func (w *worker) consoleDeps() (*consoleDeps, error) {
	st := w.state.Load()
	if st == nil || st.approvals == nil {
		return nil, errConsoleStarting
	}
	js, err := jetstream.New(st.nc)
	if err != nil {
		return nil, err
	}
	return &consoleDeps{js: js, cfg: st.q.Config(), approvals: st.approvals}, nil
}

// console serves /console.
type console struct {
	log   *zap.Logger
	users atomic.Pointer[[]consoleUser] // swapped by reloadTokens
	// tokensFile is where users came from; "" when there are none (mTLS or unauthenticated).
	tokensFile string
	mtls       bool
	open       bool   // no authentication (loopback): operators give their name
	key        []byte // this process's: signs flashes, and sessions when there are no tokens
	deps       func() (*consoleDeps, error)
	pages      map[string]*template.Template
	mux        *http.ServeMux
	// decisionWait bounds how long a decision waits to be applied before the page comes back.
	decisionWait time.Duration
	signIns      *signInGate
}

// signInGate slows down guessing tokens: each remote address may fail signInBurst sign-ins,
// then one more every signInEvery; while it has none left, its sign-ins are refused before
// any token is compared, the right one too. Behind a reverse proxy every operator shares the
// proxy's address, and so its allowance.
type signInGate struct {
	mu    sync.Mutex
	now   func() time.Time
	addrs map[string]*rate.Limiter
	// full: until then addrs is full of addresses still held back, and a sweep would free none.
	full time.Time
}

const (
	signInBurst = 5
	signInEvery = 30 * time.Second
	signInAddrs = 10_000 // addresses remembered; past it, refilled ones are forgotten (see failed)
)

func newSignInGate(now func() time.Time) *signInGate {
	return &signInGate{now: now, addrs: map[string]*rate.Limiter{}}
}

// wait is how long addr must wait before it may try again; 0 when it may now.
func (g *signInGate) wait(addr string) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	lim := g.addrs[addr]
	if lim == nil {
		return 0
	}
	left := lim.TokensAt(g.now())
	if left >= 1 {
		return 0
	}
	return time.Duration((1 - left) * float64(signInEvery))
}

// failed counts a failed sign-in from addr.
func (g *signInGate) failed(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	lim := g.addrs[addr]
	if lim == nil {
		if len(g.addrs) >= signInAddrs && !g.sweep(now) {
			// Every address held is still held back. Forgetting one to make room would give
			// whoever filled the map a fresh allowance on an address it is guessing from; so
			// the held-back ones stay held back, as promised, and this one goes uncounted
			// until one refills.
			return
		}
		lim = rate.NewLimiter(rate.Every(signInEvery), signInBurst)
		g.addrs[addr] = lim
	}
	lim.AllowN(now, 1)
}

// sweep forgets the addresses whose allowance has refilled, and says whether it freed any.
func (g *signInGate) sweep(now time.Time) bool {
	if now.Before(g.full) {
		return false
	}
	soonest, freed := signInBurst*signInEvery, false
	for k, lim := range g.addrs {
		left := lim.TokensAt(now)
		if left >= signInBurst { // refilled: as if never seen
			delete(g.addrs, k)
			freed = true
			continue
		}
		if d := time.Duration((signInBurst - left) * float64(signInEvery)); d < soonest {
			soonest = d
		}
	}
	if !freed {
		// No address is added before a sweep frees room, so none can refill sooner.
		g.full = now.Add(soonest)
	}
	return freed
}

// remoteHost is r's client address without its port.
func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

const (
	sessionCookie = "riposte_console"
	flashCookie   = "riposte_console_flash"
	csrfField     = "csrf"
)

func newConsole(s *consoleSettings, log *zap.Logger, deps func() (*consoleDeps, error)) *console {
	c := &console{
		log: log, tokensFile: s.tokensFile, mtls: s.mtls(), deps: deps, key: make([]byte, 32),
		pages: map[string]*template.Template{}, decisionWait: 5 * time.Second, signIns: newSignInGate(time.Now),
	}
	c.users.Store(&s.users)
	c.open = len(s.users) == 0 && !c.mtls
	if _, err := rand.Read(c.key); err != nil {
		panic(err) // crypto/rand does not fail on the systems Go supports
	}
	funcs := template.FuncMap{"ago": ago, "until": until, "stamp": stamp, "pretty": pretty, "join": strings.Join}
	for _, p := range []string{"approvals", "outcomes", "dlq", "login"} {
		c.pages[p] = template.Must(template.New("layout.html").Funcs(funcs).ParseFS(consoleFiles, "console/layout.html", "console/"+p+".html"))
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /console/static/console.css", c.css)
	m.HandleFunc("GET /console/login", c.loginPage)
	m.HandleFunc("POST /console/login", c.login)
	m.HandleFunc("POST /console/logout", c.authed(c.logout))
	m.HandleFunc("GET /console", c.authed(c.approvalsPage))
	m.HandleFunc("GET /console/{$}", c.authed(c.approvalsPage))
	m.HandleFunc("GET /console/outcomes", c.authed(c.outcomesPage))
	m.HandleFunc("GET /console/dlq", c.authed(c.dlqPage))
	m.HandleFunc("POST /console/approvals/{id}/{decision}", c.authed(c.decide))
	m.HandleFunc("POST /console/dlq/{seq}/replay", c.authed(c.replay))
	c.mux = m
	return c
}

// operators are the tokens file's operators as last read; none without a tokens file.
func (c *console) operators() []consoleUser { return *c.users.Load() }

// reloadTokens reads the tokens file again, so that an operator added or removed takes effect
// without a restart: a removed operator's token signs no one in, and their open sessions,
// signed with it, end. A file that no longer reads keeps the operators read last. Only for a
// console with a tokens file: the caller checks, since it also says so in the log.
func (c *console) reloadTokens() error {
	users, warning, err := readConsoleTokens(c.tokensFile)
	if err != nil {
		return err
	}
	if warning != "" {
		c.log.Warn(warning)
	}
	c.users.Store(&users)
	return nil
}

func (c *console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	c.mux.ServeHTTP(w, r)
}

func (c *console) css(w http.ResponseWriter, _ *http.Request) {
	b, _ := consoleFiles.ReadFile("console/console.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(b)
}

// operator is who is deciding, and how the console knows.
type operator struct {
	Name    string
	How     string // token, client certificate, unauthenticated
	Session bool   // signed in with a cookie, so can sign out
	csrf    string // the token this operator's forms carry
}

// identify is the operator making the request, or nil: a verified client certificate, else a
// session cookie the console signed.
func (c *console) identify(r *http.Request) *operator {
	if c.mtls && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		if name := leaf.Subject.CommonName; validOperator(name) {
			sum := sha256.Sum256(leaf.Raw)
			return &operator{Name: name, How: "client certificate", csrf: c.mac(c.key, "csrf", name, hex.EncodeToString(sum[:]))}
		}
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil || c.mtls && len(c.operators()) == 0 {
		return nil
	}
	name, key, ok := c.session(ck.Value)
	if !ok {
		return nil
	}
	how := "token"
	if c.open {
		how = "unauthenticated"
	}
	return &operator{Name: name, How: how, Session: true, csrf: c.mac(key, "csrf", ck.Value)}
}

// mac is a keyed digest of parts, URL-safe.
func (c *console) mac(key []byte, parts ...string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// sessionKey signs an operator's session: their token, so that every replica given the same
// tokens file accepts it; this process's key when operators only give a name.
func (c *console) sessionKey(name string) ([]byte, bool) {
	if c.open {
		return c.key, true
	}
	for _, u := range c.operators() {
		if u.name == name {
			return []byte(u.token), true
		}
	}
	return nil, false
}

// newSession is a session cookie's value: name and expiry, signed.
func (c *console) newSession(name string) string {
	key, _ := c.sessionKey(name)
	n := base64.RawURLEncoding.EncodeToString([]byte(name))
	exp := strconv.FormatInt(time.Now().Add(consoleSession).Unix(), 10)
	return "v1." + n + "." + exp + "." + c.mac(key, "session", name, exp)
}

// session checks a session cookie's value, returning the operator's name and session key.
func (c *console) session(v string) (name string, key []byte, ok bool) {
	parts := strings.Split(v, ".")
	if len(parts) != 4 || parts[0] != "v1" {
		return "", nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	exp, perr := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || perr != nil || time.Now().Unix() > exp || !validOperator(string(raw)) {
		return "", nil, false
	}
	name = string(raw)
	key, ok = c.sessionKey(name)
	if !ok || !hmac.Equal([]byte(parts[3]), []byte(c.mac(key, "session", name, parts[2]))) {
		return "", nil, false
	}
	return name, key, true
}

func (c *console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/console", MaxAge: maxAge, HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	})
}

// sameOrigin refuses a request a browser sent from another site: by Sec-Fetch-Site, else by
// Origin, whose host must be the request's own. A client that sends neither is judged by the
// CSRF token alone.
func sameOrigin(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" || s == "same-site" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host != "" && u.Host == r.Host
}

// authed lets only operators through: others are sent to sign in (or, posting, refused); a
// form posted must come from this site and carry the operator's CSRF token.
func (c *console) authed(next func(http.ResponseWriter, *http.Request, *operator)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op := c.identify(r)
		if op == nil {
			if r.Method == http.MethodGet && !(c.mtls && len(c.operators()) == 0) {
				http.Redirect(w, r, "/console/login", http.StatusSeeOther)
				return
			}
			c.refuse(w, r, http.StatusUnauthorized, c.signInHint())
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			if !sameOrigin(r) || r.ParseForm() != nil ||
				subtle.ConstantTimeCompare([]byte(r.PostFormValue(csrfField)), []byte(op.csrf)) != 1 {
				c.log.Warn("console form refused: not from the console's own page", zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr))
				c.refuse(w, r, http.StatusForbidden, "This form did not come from the console's own page (its CSRF token is missing or wrong, or it was sent from another site). Reload the page and try again.")
				return
			}
		}
		next(w, r, op)
	}
}

func (c *console) signInHint() string {
	if c.mtls && len(c.operators()) == 0 {
		return "This console needs a client certificate signed by the worker's --http-client-ca; its common name (CN) is your name in decisions."
	}
	return "Sign in at /console/login first."
}

// refuse answers with a plain page saying why.
func (c *console) refuse(w http.ResponseWriter, r *http.Request, status int, why string) {
	c.render(w, r, status, "login", &consoleView{Title: http.StatusText(status), Error: why, Mode: c.mode(), NoForm: true})
}

func (c *console) mode() string {
	switch {
	case c.open:
		return "open"
	case len(c.operators()) > 0:
		return "tokens"
	}
	return "mtls"
}

// consoleView is what every page's template gets.
type consoleView struct {
	Title    string
	Current  string
	Operator *operator
	CSRF     string
	Flash    *consoleFlash
	Mode     string // tokens, mtls, open
	Error    string // why the page has nothing to show
	NoForm   bool   // the login page as a refusal: no form
	Version  string
	Data     any
}

// consoleFlash is the message a redirect carries to the next page: what a decision or replay did.
type consoleFlash struct {
	Kind string `json:"kind"` // ok, warn, error
	Text string `json:"text"`
}

func (c *console) setFlash(w http.ResponseWriter, r *http.Request, kind, text string) {
	b, _ := json.Marshal(consoleFlash{Kind: kind, Text: text})
	v := base64.RawURLEncoding.EncodeToString(b)
	c.setCookie(w, r, flashCookie, v+"."+c.mac(c.key, "flash", v), 60)
}

// takeFlash reads the flash a redirect left, and clears it.
func (c *console) takeFlash(w http.ResponseWriter, r *http.Request) *consoleFlash {
	ck, err := r.Cookie(flashCookie)
	if err != nil {
		return nil
	}
	c.setCookie(w, r, flashCookie, "", -1)
	v, sig, ok := strings.Cut(ck.Value, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(c.mac(c.key, "flash", v))) {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v)
	var f consoleFlash
	if err != nil || json.Unmarshal(b, &f) != nil {
		return nil
	}
	return &f
}

func (c *console) render(w http.ResponseWriter, r *http.Request, status int, page string, v *consoleView) {
	v.Version = currentBuild().Version
	if v.Mode == "" {
		v.Mode = c.mode()
	}
	if v.Operator != nil {
		v.CSRF = v.Operator.csrf
	}
	if page != "login" {
		v.Flash = c.takeFlash(w, r)
	}
	var b bytes.Buffer
	if err := c.pages[page].Execute(&b, v); err != nil {
		c.log.Error("render console page", zap.String("page", page), zap.Error(err))
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func (c *console) loginPage(w http.ResponseWriter, r *http.Request) {
	if c.mtls && len(c.operators()) == 0 {
		c.refuse(w, r, http.StatusUnauthorized, c.signInHint())
		return
	}
	c.render(w, r, http.StatusOK, "login", &consoleView{Title: "Sign in"})
}

// login signs an operator in: with a token from the tokens file, or on an unauthenticated
// console with the name they give.
func (c *console) login(w http.ResponseWriter, r *http.Request) {
	if c.mtls && len(c.operators()) == 0 {
		c.refuse(w, r, http.StatusUnauthorized, c.signInHint())
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if !sameOrigin(r) || r.ParseForm() != nil {
		c.refuse(w, r, http.StatusForbidden, "This sign-in did not come from the console's own page.")
		return
	}
	var name string
	if c.open {
		name = strings.TrimSpace(r.PostFormValue("name"))
		if !validOperator(name) {
			c.render(w, r, http.StatusBadRequest, "login", &consoleView{Title: "Sign in", Error: fmt.Sprintf("Give your name: printable, at most %d bytes. Decisions carry it.", maxOperatorName)})
			return
		}
	} else {
		if wait := c.signIns.wait(remoteHost(r)); wait > 0 {
			c.log.Warn("console sign-in refused: too many wrong tokens from this address", zap.String("remote", r.RemoteAddr), zap.Duration("retry_after", wait))
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Round(time.Second)/time.Second)+1))
			c.render(w, r, http.StatusTooManyRequests, "login", &consoleView{Title: "Sign in",
				Error: fmt.Sprintf("Too many wrong tokens from your address: try again in %s.", wait.Round(time.Second))})
			return
		}
		token := []byte(strings.TrimSpace(r.PostFormValue("token")))
		for _, u := range c.operators() {
			if subtle.ConstantTimeCompare(token, []byte(u.token)) == 1 {
				name = u.name
			}
		}
		if name == "" {
			c.signIns.failed(remoteHost(r))
			c.log.Warn("console sign-in refused: unknown token", zap.String("remote", r.RemoteAddr))
			c.render(w, r, http.StatusUnauthorized, "login", &consoleView{Title: "Sign in", Error: "That token is not one of the console's (--console-tokens)."})
			return
		}
	}
	c.log.Info("console sign-in", zap.String("operator", name), zap.Bool("authenticated", !c.open), zap.String("remote", r.RemoteAddr))
	c.setCookie(w, r, sessionCookie, c.newSession(name), int(consoleSession/time.Second))
	http.Redirect(w, r, "/console", http.StatusSeeOther)
}

func (c *console) logout(w http.ResponseWriter, r *http.Request, _ *operator) {
	c.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/console/login", http.StatusSeeOther)
}

// readDeps is the worker's streams and approvals, or a page saying why not yet.
func (c *console) readDeps(w http.ResponseWriter, r *http.Request, page string, v *consoleView) *consoleDeps {
	d, err := c.deps()
	if err != nil {
		v.Error = err.Error()
		c.render(w, r, http.StatusServiceUnavailable, page, v)
		return nil
	}
	return d
}

// approvalRow is one waiting gate on the approvals page.
type approvalRow struct {
	queue.ApprovalRecord
	Inputs    string
	Voters    []string
	VotedByMe bool
}

func (c *console) approvalsPage(w http.ResponseWriter, r *http.Request, op *operator) {
	v := &consoleView{Title: "Approvals", Current: "approvals", Operator: op}
	d := c.readDeps(w, r, "approvals", v)
	if d == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout)
	defer cancel()
	waiting, err := d.approvals.Waiting(ctx)
	if err != nil {
		v.Error = err.Error()
		c.render(w, r, http.StatusBadGateway, "approvals", v)
		return
	}
	rows := make([]approvalRow, 0, len(waiting))
	for _, rec := range waiting {
		row := approvalRow{ApprovalRecord: rec, Inputs: pretty(rec.Inputs), Voters: voters(rec)}
		for _, vote := range rec.Votes {
			row.VotedByMe = row.VotedByMe || strings.EqualFold(vote.By, op.Name)
		}
		rows = append(rows, row)
	}
	v.Data = rows
	c.render(w, r, http.StatusOK, "approvals", v)
}

// decide sends an operator's decision as `worker approve` and `worker deny` do, waits a little
// for a worker to apply it, and says what happened on the next page.
func (c *console) decide(w http.ResponseWriter, r *http.Request, op *operator) {
	decision := r.PathValue("decision")
	if decision != queue.DecisionApprove && decision != queue.DecisionDeny {
		http.NotFound(w, r)
		return
	}
	back := func(kind, text string) {
		c.setFlash(w, r, kind, text)
		http.Redirect(w, r, "/console", http.StatusSeeOther)
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if decision == queue.DecisionDeny && reason == "" {
		back("error", "A deny needs a reason: say why the step must not run.")
		return
	}
	d, err := c.deps()
	if err != nil {
		back("error", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), opTimeout+c.decisionWait)
	defer cancel()
	before, err := d.approvals.Send(ctx, queue.Decision{ApprovalID: r.PathValue("id"), Decision: decision, By: op.Name, Reason: reason})
	if err != nil {
		c.log.Info("console decision refused", zap.String("approval_id", r.PathValue("id")), zap.String("decision", decision),
			zap.String("by", op.Name), zap.Error(err))
		back("error", decision+" not sent: "+err.Error())
		return
	}
	c.log.Info("console decision sent", zap.String("approval_id", before.ID), zap.String("decision", decision),
		zap.String("by", op.Name), zap.String("how", op.How))
	sent := sentLine(decision, before) + " by " + op.Name
	applied, err := awaitApplied(ctx, d.approvals, before, c.decisionWait)
	if err != nil {
		back("warn", sent+"; "+err.Error())
		return
	}
	back("ok", sent+"; "+applied)
}

// outcomeFilter is the outcomes page's form.
type outcomeFilter struct {
	AlertID, Playbook, Status string
	Limit                     int
	Statuses                  []string
	Rows                      []outcomeRow
}

// outcomeRow is one outcome on the page, with the time the stream stored it.
type outcomeRow struct {
	Stored time.Time
	*outcomeDoc
}

func (c *console) outcomesPage(w http.ResponseWriter, r *http.Request, op *operator) {
	q := r.URL.Query()
	f := &outcomeFilter{AlertID: q.Get("alert_id"), Playbook: q.Get("playbook"), Status: q.Get("status"), Limit: 50, Statuses: outcomeStatuses}
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		f.Limit = min(n, 500)
	}
	v := &consoleView{Title: "Outcomes", Current: "outcomes", Operator: op, Data: f}
	d := c.readDeps(w, r, "outcomes", v)
	if d == nil {
		return
	}
	oq, err := newOutcomeQuery(d.cfg, f.AlertID, f.Playbook, f.Status)
	if err != nil {
		v.Error = strings.NewReplacer("--status", "status", "--playbook", "playbook").Replace(err.Error())
		c.render(w, r, http.StatusBadRequest, "outcomes", v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*opTimeout)
	defer cancel()
	found, _, err := oq.latest(ctx, d.js, d.cfg.OutcomesStream, f.Limit)
	if err != nil {
		v.Error = err.Error()
		c.render(w, r, http.StatusBadGateway, "outcomes", v)
		return
	}
	for _, o := range found {
		f.Rows = append(f.Rows, outcomeRow{Stored: o.msg.Time, outcomeDoc: o.doc})
	}
	c.render(w, r, http.StatusOK, "outcomes", v)
}

// dlqView is the dead letters page.
type dlqView struct {
	Reason  string
	Reasons []string
	Limit   int
	Letters []*deadLetter
	More    bool // the limit was reached
}

func (c *console) dlqPage(w http.ResponseWriter, r *http.Request, op *operator) {
	dv := &dlqView{Reason: r.URL.Query().Get("reason"), Reasons: dlqReasons, Limit: 200}
	v := &consoleView{Title: "Dead letters", Current: "dlq", Operator: op, Data: dv}
	d := c.readDeps(w, r, "dlq", v)
	if d == nil {
		return
	}
	ff := dlqFilterFlags{reason: dv.Reason, since: &timeFlag{}, until: &timeFlag{}}
	df, err := ff.filter()
	if err != nil {
		v.Error = strings.ReplaceAll(err.Error(), "--reason", "reason")
		c.render(w, r, http.StatusBadRequest, "dlq", v)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*opTimeout)
	defer cancel()
	err = eachDeadLetter(ctx, d.js, d.cfg, df, dv.Limit, func(dl *deadLetter) bool {
		dv.Letters = append(dv.Letters, dl)
		return true
	})
	if err != nil {
		v.Error = err.Error()
		c.render(w, r, http.StatusBadGateway, "dlq", v)
		return
	}
	dv.More = len(dv.Letters) >= dv.Limit
	c.render(w, r, http.StatusOK, "dlq", v)
}

// replay is `worker dlq replay SEQ` behind a button: the same replayer, its line on the next page.
func (c *console) replay(w http.ResponseWriter, r *http.Request, op *operator) {
	back := func(kind, text string) {
		c.setFlash(w, r, kind, text)
		http.Redirect(w, r, "/console/dlq", http.StatusSeeOther)
	}
	seqs, err := parseSeqs([]string{r.PathValue("seq")})
	if err != nil {
		back("error", err.Error())
		return
	}
	d, err := c.deps()
	if err != nil {
		back("error", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*opTimeout)
	defer cancel()
	var out bytes.Buffer
	rp, _, err := openReplayer(ctx, d.js, d.cfg, false, &out)
	if err != nil {
		back("error", fmt.Sprintf("%d  not replayed: %v", seqs[0], err))
		return
	}
	result := notReplayed
	if dl, err := getDeadLetter(ctx, rp.dlq, d.cfg.DLQStream, seqs[0]); err != nil {
		fmt.Fprintf(&out, "%d  not replayed: %v\n", seqs[0], err)
	} else {
		result = rp.replay(ctx, dl)
	}
	line := strings.TrimSpace(out.String())
	c.log.Info("console replay", zap.Uint64("seq", seqs[0]), zap.String("by", op.Name), zap.String("result", line))
	kind := "ok"
	if result == notReplayed {
		kind = "error"
	}
	back(kind, line)
}

// Template helpers.

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return roundAge(time.Since(t)) + " ago"
}

func until(t time.Time) string {
	d := time.Until(t)
	if d <= 0 {
		return "expired: decided by its timeout within seconds"
	}
	return "in " + roundAge(d)
}

func roundAge(d time.Duration) string {
	if d < time.Hour {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func pretty(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
