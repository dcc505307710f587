// Package cyberark is riposte's CyberArk Privileged Threat Analytics (PTA) integration, reached
// through the Password Vault Web Access (PVWA) REST API: the client (logon session, error
// classes, the URL rules PVWA imposes on path values), its catalogue entries, and a strict fake
// of the service for tests, `worker demo` and `--simulate`.
package cyberark

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/actions"
	"github.com/riposte-soar/riposte/internal/actions/vendorhttp"
)

// The PVWA paths riposte uses. PVWA runs on IIS, which matches paths without regard to case
// (its own documents write both /API/auth and /API/Auth); riposte sends the documented spelling.
const (
	vaultPath   = "/PasswordVault"
	logonPath   = vaultPath + "/API/auth/%s/Logon"
	logoffPath  = vaultPath + "/API/Auth/Logoff"
	eventsPath  = vaultPath + "/API/pta/API/Events/"
	defaultAuth = "CyberArk"

	credentialsHint = "check PVWA_USERNAME / PVWA_PASSWORD / PVWA_AUTH_METHOD"
)

// authMethods are the logon methods of PVWA's /API/auth/{method}/Logon that take a username and
// a password, in their documented spelling. SAML and PKI take neither and are not offered.
func authMethods() []string { return []string{"CyberArk", "LDAP", "RADIUS", "Windows"} }

// authMethod returns the documented spelling of a logon method given in any case; "" means the
// default, CyberArk.
func authMethod(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return defaultAuth, nil
	}
	for _, m := range authMethods() {
		if strings.EqualFold(m, name) {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown PVWA authentication method %q: valid methods are CyberArk (default), LDAP, RADIUS, Windows", name)
}

// pvwaURL checks the PVWA server's URL and returns it without a trailing slash or the
// /PasswordVault that operators copy from the browser's address bar along with the host.
func pvwaURL(raw string) (string, error) {
	base, err := vendorhttp.BaseURL("PVWA base URL (PVWA_BASE_URL)", raw)
	if err != nil {
		return "", err
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", errors.New("PVWA base URL (PVWA_BASE_URL) is not a valid URL")
	}
	p := strings.TrimRight(u.Path, "/")
	if len(p) >= len(vaultPath) && strings.EqualFold(p[len(p)-len(vaultPath):], vaultPath) {
		u.Path, u.RawPath = p[:len(p)-len(vaultPath)], ""
		base = strings.TrimRight(u.String(), "/")
	}
	return base, nil
}

// checkURLValue applies PVWA's rules for a value placed in a URL path (the document's "URL"
// section): no spaces, none of + & %, and, because PVWA takes no %-encoding at all, nothing that
// would need encoding either: only letters, digits and - . _ ~ $ : = @ pass. A '/' would change
// the route. A dot is allowed; the caller ends such a path with '/', as PVWA asks.
func checkURLValue(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	if v == "." || v == ".." {
		return fmt.Errorf("%q is not a usable path segment", v)
	}
	for _, r := range v {
		switch {
		case unicode.IsSpace(r):
			return fmt.Errorf("%q must not contain spaces: PVWA URLs cannot carry them", v)
		case r == '+' || r == '&' || r == '%':
			return fmt.Errorf("%q must not contain %q: PVWA does not support + & %% in URL values", v, r)
		case r == '/' || r == '\\':
			return fmt.Errorf("%q must not contain %q", v, r)
		case unicode.IsControl(r):
			return fmt.Errorf("%q must not contain control characters", v)
		case !urlSafe(r):
			return fmt.Errorf("%q must not contain %q: PVWA takes no %%-encoding, so a URL value may hold only letters, digits and - . _ ~ $ : = @", v, r)
		}
	}
	return nil
}

// urlSafe is what url.PathEscape leaves as it is, less the + and & that PVWA refuses.
func urlSafe(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("-._~$:=@", r)
}

// Status is the state of a PTA security event.
type Status string

// The states update_event accepts; PVWA's document writes them in lower case, the service
// answers them in upper case, and riposte sends them in upper case.
const (
	StatusOpen   Status = "open"
	StatusClosed Status = "closed"
)

// verb says what setting s does to an event, for errors and effect names.
func (s Status) verb() string {
	if s == StatusOpen {
		return "reopen"
	}
	return "close"
}

// Config is what a Client needs. Nil HTTPClient and Now get defaults (a client with a 30s
// timeout, time.Now); tests replace them.
type Config struct {
	BaseURL    string // the PVWA server, e.g. https://pvwa.example.com; a trailing /PasswordVault is tolerated
	Username   string
	Password   string
	AuthMethod string // CyberArk (default), LDAP, RADIUS or Windows, in any case
	HTTPClient *http.Client
	UserAgent  string
	Now        func() time.Time
}

// Client talks to PTA through PVWA. It is safe for concurrent use: every caller shares one
// logon session, opened on first use and renewed once when PVWA refuses it.
type Client struct {
	base     string
	username string
	password string
	method   string
	http     *vendorhttp.Client
	now      func() time.Time
	log      *zap.Logger
	session  *vendorhttp.CredentialCache
	redact   *vendorhttp.Redactor
}

// NewClient checks cfg and returns a client; it makes no request until the first call.
func NewClient(cfg Config, log *zap.Logger) (*Client, error) {
	var errs []error
	base, err := pvwaURL(cfg.BaseURL)
	if err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(cfg.Username) == "" {
		errs = append(errs, errors.New("PVWA username is empty (PVWA_USERNAME)"))
	}
	if cfg.Password == "" {
		errs = append(errs, errors.New("PVWA password is empty (PVWA_PASSWORD)"))
	}
	method, err := authMethod(cfg.AuthMethod)
	if err == nil {
		// The method is a path value like any other.
		err = checkURLValue(method)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("PVWA_AUTH_METHOD: %w", err))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	c := &Client{
		base:     base,
		username: strings.TrimSpace(cfg.Username),
		password: cfg.Password,
		method:   method,
		http:     vendorhttp.NewClient(cfg.HTTPClient, cfg.UserAgent),
		now:      cfg.Now,
		log:      log,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	// A PVWA session ends after a stretch of inactivity whose length the vault sets and the
	// logon answer does not state: keep it until PVWA refuses it (RenewAt zero).
	c.session = vendorhttp.NewCredentialCache("PVWA session token", credentialsHint, c.logon, c.now)
	c.redact = vendorhttp.NewRedactor([]string{c.password}, c.session.Secrets)
	return c, nil
}

// CloseEvent sets a PTA security event's status to closed and returns the event as PVWA answers
// it, its mStatus in lower case.
func (c *Client) CloseEvent(ctx context.Context, eventID string) (map[string]any, error) {
	return c.SetEventStatus(ctx, eventID, StatusClosed)
}

// ReopenEvent sets a PTA security event's status to open; see CloseEvent.
func (c *Client) ReopenEvent(ctx context.Context, eventID string) (map[string]any, error) {
	return c.SetEventStatus(ctx, eventID, StatusOpen)
}

// SetEventStatus is PTA's "Update security event": PATCH
// /PasswordVault/API/pta/API/Events/{eventId}/ with {"mStatus": "OPEN"|"CLOSED"}. It returns the
// event as answered, with mStatus normalised to lower case. An answer whose status is not the
// one asked for is an error: PTA did not do it. The error is retryable, as setting a state is
// safe to repeat and a concurrent change is the likeliest cause.
func (c *Client) SetEventStatus(ctx context.Context, eventID string, want Status) (map[string]any, error) {
	op := fmt.Sprintf("%s PTA event %q on PVWA", want.verb(), eventID)
	if want != StatusOpen && want != StatusClosed {
		return nil, actions.Invalid(fmt.Errorf("%s: unknown status %q: want open or closed", op, want))
	}
	if err := checkURLValue(eventID); err != nil {
		return nil, actions.Invalid(fmt.Errorf("%s: invalid eventId: %w", op, err))
	}
	// Always end with '/': PVWA wants it whenever a value holds a dot, and takes it otherwise too.
	path := eventsPath + eventID + "/"
	body := map[string]string{"mStatus": strings.ToUpper(string(want))}
	ev, err := vendorhttp.WithCredential(ctx, c.session, op, func(ctx context.Context, tok string) (map[string]any, error) {
		return c.patchEvent(ctx, op, path, body, tok)
	})
	if err != nil {
		return nil, err
	}
	got, err := eventStatus(ev["mStatus"])
	if err != nil {
		return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: the answer is not the event: %w", op, err))
	}
	if got != want {
		return nil, actions.WithReason(actions.ReasonServer, fmt.Errorf("%s: PVWA answered the event with mStatus %q, not %q: the change was not made", op, got, want))
	}
	ev["mStatus"] = string(got)
	return ev, nil
}

func (c *Client) patchEvent(ctx context.Context, op, path string, body any, tok string) (map[string]any, error) {
	req, err := vendorhttp.NewJSONRequest(http.MethodPatch, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	// The session token itself, with no scheme: PVWA refuses "Bearer <token>".
	req.Header.Set("Authorization", tok)
	resp, err := c.http.Do(ctx, op, req)
	if err != nil {
		return nil, err
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, actions.ClassifyHTTP(op, resp.Status, resp.Header, c.redact.Scrub(vendorMessage(resp.Body)), c.now())
	}
	var ev map[string]any
	if err := vendorhttp.DecodeJSON(resp.Body, &ev); err != nil || ev == nil {
		// A proxy's page or a cut body: something between us and PVWA answered; try again later.
		excerpt := actions.Snippet(resp.Body)
		if excerpt == "" {
			excerpt = "an empty body"
		}
		return nil, actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("%s: HTTP %d response is not a JSON object: %s", op, resp.Status, c.redact.Scrub(excerpt)))
	}
	if code, msg := errorFields(ev); code != "" {
		// An error under HTTP 2xx: PVWA said no, whatever the status.
		return nil, actions.Permanent(actions.WithReason(actions.ReasonClient, fmt.Errorf("%s: HTTP %d with an error: %s", op, resp.Status, c.redact.Scrub(formatVendorError(code, msg)))))
	}
	return ev, nil
}

// eventStatus reads an answered mStatus, in either case.
func eventStatus(v any) (Status, error) {
	s, ok := v.(string)
	if !ok {
		if v == nil {
			return "", errors.New("no mStatus")
		}
		return "", fmt.Errorf("mStatus is %T, not a string", v)
	}
	switch {
	case strings.EqualFold(s, string(StatusOpen)):
		return StatusOpen, nil
	case strings.EqualFold(s, string(StatusClosed)):
		return StatusClosed, nil
	}
	return "", fmt.Errorf("unknown mStatus %q", s)
}

// logon opens a PVWA session: POST /PasswordVault/API/auth/{method}/Logon. A refusal is
// permanent and never an *actions.UnauthorizedError, so no caller tries to renew its way past
// wrong credentials.
func (c *Client) logon(ctx context.Context) (vendorhttp.Credential, error) {
	op := fmt.Sprintf("log on to PVWA as %q (%s authentication)", c.username, c.method)
	req, err := vendorhttp.NewJSONRequest(http.MethodPost, c.base+fmt.Sprintf(logonPath, c.method),
		map[string]string{"username": c.username, "password": c.password})
	if err != nil {
		return vendorhttp.Credential{}, fmt.Errorf("%s: %w", op, err)
	}
	resp, err := c.http.Do(ctx, op, req)
	if err != nil {
		return vendorhttp.Credential{}, err
	}
	if resp.Status == http.StatusUnauthorized || resp.Status == http.StatusForbidden {
		msg := c.redact.Scrub(vendorMessage(resp.Body))
		return vendorhttp.Credential{}, actions.Permanent(&actions.HTTPStatusError{
			Op: op, Status: resp.Status, Message: strings.TrimSpace(msg + " (" + credentialsHint + ")"),
		})
	}
	if resp.Status == http.StatusNotFound {
		// No logon route: the URL or the method is wrong, and waiting will not fix either.
		msg := c.redact.Scrub(vendorMessage(resp.Body))
		return vendorhttp.Credential{}, actions.Permanent(&actions.HTTPStatusError{
			Op: op, Status: resp.Status, Message: strings.TrimSpace(msg + " (check PVWA_BASE_URL and PVWA_AUTH_METHOD)"),
		})
	}
	if resp.Status < 200 || resp.Status > 299 {
		return vendorhttp.Credential{}, actions.ClassifyHTTP(op, resp.Status, resp.Header, c.redact.Scrub(vendorMessage(resp.Body)), c.now())
	}
	tok, err := c.sessionToken(resp.Body)
	if err != nil {
		return vendorhttp.Credential{}, fmt.Errorf("%s: %w", op, err)
	}
	c.log.Debug("PVWA session opened", zap.String("user", c.username), zap.String("auth_method", c.method))
	return vendorhttp.Credential{Value: tok}, nil
}

// sessionToken reads a logon answer. PVWA's /API/auth answers the token as a JSON string; the
// object shapes ({"CyberArkLogonResult": …} of the classic API, {"LogonResult": …} of shared
// logon) are what the PVWA client most used in the field (psPAS) also reads from a logon, so
// they are taken too. Errors never quote the body: it holds the token.
func (c *Client) sessionToken(body []byte) (string, error) {
	var tok string
	switch vendorhttp.FirstByte(body) {
	case '"':
		if err := vendorhttp.DecodeJSON(body, &tok); err != nil {
			return "", actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("invalid JSON in the logon answer: %s", vendorhttp.JSONErrorKind(err)))
		}
	case '{':
		var obj map[string]any
		if err := vendorhttp.DecodeJSON(body, &obj); err != nil {
			return "", actions.WithReason(actions.ReasonBadResponse, fmt.Errorf("invalid JSON in the logon answer: %s", vendorhttp.JSONErrorKind(err)))
		}
		if code, msg := errorFields(obj); code != "" {
			return "", actions.Permanent(actions.WithReason(actions.ReasonAuth,
				fmt.Errorf("refused: %s (%s)", c.redact.Scrub(formatVendorError(code, msg)), credentialsHint)))
		}
		for _, k := range []string{"CyberArkLogonResult", "LogonResult"} {
			if s, ok := obj[k].(string); ok {
				tok = s
				break
			}
		}
		if tok == "" {
			return "", actions.WithReason(actions.ReasonBadResponse, errors.New("the logon answer holds no session token"))
		}
	default:
		return "", actions.WithReason(actions.ReasonBadResponse, errors.New("the logon answer is not a session token (a quoted JSON string)"))
	}
	if tok == "" {
		return "", actions.WithReason(actions.ReasonBadResponse, errors.New("the logon answer is an empty session token"))
	}
	if strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f || r > unicode.MaxASCII }) >= 0 {
		// It goes back verbatim as a header value, which cannot carry these.
		return "", actions.WithReason(actions.ReasonBadResponse, errors.New("the logon answer's session token holds characters an Authorization header cannot carry"))
	}
	return tok, nil
}

// Logoff ends the session this client holds, if any: POST /PasswordVault/API/Auth/Logoff. The
// worker calls it once at shutdown (Instance.Close), so a session does not linger at the vault
// until it times out. With no session open it sends nothing; a session PVWA already ended
// (401) counts as ended. A later call logs on afresh.
func (c *Client) Logoff(ctx context.Context) error {
	tok := c.session.Take()
	if tok == "" {
		return nil
	}
	const op = "log off from PVWA"
	// The cache no longer holds the token, so its redactor would not know it.
	scrub := func(s string) string { return vendorhttp.NewRedactor([]string{tok}).Scrub(c.redact.Scrub(s)) }
	req, err := vendorhttp.NewJSONRequest(http.MethodPost, c.base+logoffPath, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Authorization", tok)
	resp, err := c.http.Do(ctx, op, req)
	if err != nil {
		return err // names the URL, never the header that holds the token
	}
	switch {
	case resp.Status >= 200 && resp.Status <= 299:
		c.log.Info("PVWA session closed", zap.String("user", c.username))
		return nil
	case resp.Status == http.StatusUnauthorized:
		c.log.Debug("PVWA session had already ended", zap.String("user", c.username))
		return nil
	}
	return actions.ClassifyHTTP(op, resp.Status, resp.Header, scrub(vendorMessage(resp.Body)), c.now())
}

// vendorMessage extracts PVWA's own words from an error body: ErrorMessage with its ErrorCode,
// else an ASP.NET-style Message, else a short excerpt.
func vendorMessage(body []byte) string {
	var obj map[string]any
	if vendorhttp.FirstByte(body) == '{' && vendorhttp.DecodeJSON(body, &obj) == nil {
		if code, msg := errorFields(obj); code != "" || msg != "" {
			return formatVendorError(code, msg)
		}
		if s, ok := fold(obj, "Message").(string); ok && strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	return actions.Snippet(body)
}

// errorFields reads ErrorCode and ErrorMessage, in whatever case the keys come.
func errorFields(obj map[string]any) (code, msg string) {
	text := func(v any) string {
		if v == nil {
			return ""
		}
		return strings.TrimSpace(fmt.Sprint(v))
	}
	return text(fold(obj, "ErrorCode")), text(fold(obj, "ErrorMessage"))
}

// fold looks a key up as written, else in any case: PVWA's .NET side and PTA's Java side do not
// agree on capitals.
func fold(obj map[string]any, key string) any {
	if v, ok := obj[key]; ok {
		return v
	}
	for k, v := range obj {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// formatVendorError shows PVWA's error as `The event was not found (ErrorCode PASWS167E)`:
// the message to read first, the code to search PVWA's documents and logs for.
func formatVendorError(code, msg string) string {
	switch {
	case code == "":
		return msg
	case msg == "":
		return "ErrorCode " + code
	}
	return fmt.Sprintf("%s (ErrorCode %s)", msg, code)
}
