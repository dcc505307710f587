package main

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The console in a real browser: Debian's chromium, headless, driven with chromedp. The tests
// skip when no chromium is installed; .ci/run installs it.

var screenshots = flag.Bool("screenshots", false, "TestConsoleScreenshots writes docs/console/*.png")

// chromium is the browser binary on PATH, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless chromium for one test and returns its tab's context.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromium()
	if path == "" {
		t.Skip("no chromium, chromium-browser or google-chrome on PATH: the console's browser tests skip (apt-get install chromium; .ci/run installs it)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 800))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	// The first action starts the browser, for as long as ctx lives: no timeout on it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// do runs browser steps, each batch within 20 s.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// text is the visible text of the element sel selects, once it is visible.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for {
		got, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel), chromedp.NodeVisible))
		if err == nil {
			return got
		}
		// A form's submit replaces the page: a node found on the page before it is gone by the
		// time its text is asked for. The next query finds it on the new page.
		if !strings.Contains(err.Error(), "No node with given id") || sctx.Err() != nil {
			t.Fatalf("the text of %s: %v", sel, err)
		}
	}
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// TestConsoleBrowser is not parallel with the package's other tests: chromium takes both cores
// of a small machine for seconds, more than the latency bounds of the outage tests allow for.
// Its two cases run together, alone, before the parallel tests start.
func TestConsoleBrowser(t *testing.T) {
	if chromium() == "" {
		t.Skip("no chromium, chromium-browser or google-chrome on PATH: the console's browser tests skip (apt-get install chromium; .ci/run installs it)")
	}
	t.Run("ApprovesAnIsolation", browserApprovesAnIsolation)
	t.Run("DeniesAnIsolation", browserDeniesAnIsolation)
}

// An operator signs in with a token, approves a waiting isolation, and sees it done: the
// GravityZone fake isolated the endpoint once, and the outcomes page says who approved.
func browserApprovesAnIsolation(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	s := startStack(t, approvalPlaybooks, withTokenConsole(t))
	s.publish("soar.alerts.approval.one", "", gateAlert("browser-approve", "ep-b1"), nil)
	req := s.awaitRequest("isolate-approved", "browser-approve")

	do(t, ctx, "sign in",
		chromedp.Navigate(s.httpURL+"/console"),
		chromedp.SendKeys(css(`input[name="token"]`), aliceToken, chromedp.NodeVisible),
		chromedp.Click(css(`form.login button`), chromedp.NodeVisible),
	)
	card := text(t, ctx, "#a-"+req.ID)
	for _, want := range []string{"Isolate web-ep-b1 (ep-b1) for event ev-1?", "isolate-approved", "0 of 1", `"endpointId": "ep-b1"`} {
		if !strings.Contains(card, want) {
			t.Errorf("the approval's card lacks %q:\n%s", want, card)
		}
	}
	do(t, ctx, "approve",
		chromedp.SendKeys(css("#approve-"+req.ID+` input[name="reason"]`), "owner agrees", chromedp.NodeVisible),
		chromedp.Click(css("#approve-"+req.ID+" button"), chromedp.NodeVisible),
	)
	if flash := text(t, ctx, "#flash"); !strings.Contains(flash, "approve sent for "+req.ID) || !strings.Contains(flash, "decided: approve by alice") {
		t.Errorf("after approving: %q", flash)
	}
	o := s.outcomeFor("isolate-approved", "browser-approve")
	if o["status"] != "succeeded" || s.vendors.gz.Effects("isolate", "ep-b1") != 1 {
		t.Fatalf("outcome %v, isolations %d: want succeeded, once", o["status"], s.vendors.gz.Effects("isolate", "ep-b1"))
	}
	do(t, ctx, "open the outcomes page", chromedp.Click(css(`nav a[href="/console/outcomes"]`), chromedp.NodeVisible))
	row := text(t, ctx, `tr.outcome[data-alert="browser-approve"]`)
	for _, want := range []string{"isolate-approved", "succeeded", "gravityzone.isolate_endpoint", "approved by alice", "owner agrees"} {
		if !strings.Contains(row, want) {
			t.Errorf("the outcome's row lacks %q:\n%s", want, row)
		}
	}
}

// On an unauthenticated loopback console an operator gives a name and denies an isolation: no
// vendor call, and the outcome says who denied it and why.
func browserDeniesAnIsolation(t *testing.T) {
	t.Parallel()
	ctx := newBrowser(t)
	s := startStack(t, approvalPlaybooks, withConsole(t, nil))
	s.publish("soar.alerts.approval.one", "", gateAlert("browser-deny", "ep-b2"), nil)
	req := s.awaitRequest("isolate-approved", "browser-deny")

	do(t, ctx, "give a name",
		chromedp.Navigate(s.httpURL+"/console"),
		chromedp.SendKeys(css(`input[name="name"]`), "bob", chromedp.NodeVisible),
		chromedp.Click(css(`form.login button`), chromedp.NodeVisible),
	)
	if banner := text(t, ctx, "#unauthenticated"); !strings.Contains(banner, "Unauthenticated console") {
		t.Errorf("banner = %q", banner)
	}
	do(t, ctx, "deny",
		chromedp.SendKeys(css("#deny-"+req.ID+` input[name="reason"]`), "production database server", chromedp.NodeVisible),
		chromedp.Click(css("#deny-"+req.ID+" button"), chromedp.NodeVisible),
	)
	if flash := text(t, ctx, "#flash"); !strings.Contains(flash, "decided: deny by bob") {
		t.Errorf("after denying: %q", flash)
	}
	o := s.outcomeFor("isolate-approved", "browser-deny")
	if o["status"] != "failed" || stepOf(t, o, "isolate")["status"] != "denied" {
		t.Errorf("outcome = %v", o)
	}
	do(t, ctx, "open the outcomes page", chromedp.Navigate(s.httpURL+"/console/outcomes?alert_id=browser-deny"))
	if row := text(t, ctx, `tr.outcome[data-alert="browser-deny"]`); !strings.Contains(row, "denied by bob") || !strings.Contains(row, "production database server") {
		t.Errorf("the outcome's row:\n%s", row)
	}
	s.settled()
	if n := s.vendors.gz.Effects("isolate", "ep-b2"); n != 0 {
		t.Errorf("a denied isolation reached GravityZone %d times", n)
	}
}

// go test ./cmd/worker -run TestConsoleScreenshots -screenshots rewrites docs/console/*.png,
// the pictures in docs/console.md.
func TestConsoleScreenshots(t *testing.T) {
	if !*screenshots {
		t.Skip("writes docs/console/*.png only with -screenshots")
	}
	ctx := newBrowser(t)
	s := startStack(t, approvalPlaybooks, withTokenConsole(t))
	for _, a := range []struct{ subject, id, endpoint string }{
		{"soar.alerts.approval.one", "incident-4711", "ep-77"}, {"soar.alerts.approval.one", "incident-4712", "ep-78"},
		{"soar.alerts.approval.one", "incident-4713", "ep-79"}, {"soar.alerts.approval.two", "incident-4714", "ep-80"},
	} {
		s.publish(a.subject, "", gateAlert(a.id, a.endpoint), nil)
	}
	approve, deny := s.awaitRequest("isolate-approved", "incident-4711"), s.awaitRequest("isolate-approved", "incident-4712")
	s.awaitRequest("isolate-approved", "incident-4713")
	two := s.awaitRequest("isolate-two-approvers", "incident-4714")
	s.mustCLI("approve", approve.ID, "--by", "alice", "--reason", "confirmed with the owner")
	s.mustCLI("deny", deny.ID, "--by", "bob", "--reason", "production database server")
	s.mustCLI("approve", two.ID, "--by", "bob")
	s.outcomeFor("isolate-approved", "incident-4711")
	s.outcomeFor("isolate-approved", "incident-4712")
	s.publish("soar.alerts.approval.one", "", `{"id": "incident-4715", "endpointId": `, map[string]string{"X-Producer": "siem-7"})
	s.await(s.cfg.DLQStream, "soar.dlq.invalid")
	s.settled()

	dir := filepath.Join("..", "..", "docs", "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "sign in",
		chromedp.Navigate(s.httpURL+"/console/login"),
		chromedp.SendKeys(css(`input[name="token"]`), aliceToken, chromedp.NodeVisible),
		chromedp.Click(css(`form.login button`), chromedp.NodeVisible),
		chromedp.WaitVisible(css("section.approval")),
	)
	for _, p := range []struct{ name, path, ready string }{
		{"approvals", "/console", "section.approval"}, {"outcomes", "/console/outcomes", "tr.outcome"}, {"dlq", "/console/dlq", "tr.letter"},
	} {
		do(t, ctx, p.name, chromedp.Navigate(s.httpURL+p.path), chromedp.WaitVisible(css(p.ready)))
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			t.Fatalf("screenshot of %s: %v", p.path, err)
		}
		if err := os.WriteFile(filepath.Join(dir, p.name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", p.name, len(png))
	}
}
