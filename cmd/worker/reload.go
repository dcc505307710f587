package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/riposte-soar/riposte/internal/engine"
	"github.com/riposte-soar/riposte/internal/playbook"
)

// reloadDebounce lets an editor's save (write, rename, chmod) or a Kubernetes ConfigMap update
// (a symlink swap) settle into one reload.
const reloadDebounce = 500 * time.Millisecond

// reloader loads the playbooks again on request and swaps them in between alerts. A broken
// set is logged with its file:line problems and refused; the last good one keeps serving.
type reloader struct {
	w   *worker
	eng *engine.Engine
	mu  sync.Mutex // one reload at a time
}

// reload loads, checks and swaps in the playbooks; it returns why not when it refused them.
func (r *reloader) reload(why string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.w.log.With(zap.String("trigger", why))
	if c := r.w.console.Load(); c != nil && c.tokensFile != "" {
		if err := c.reloadTokens(); err != nil {
			log.Error("console tokens not reloaded: the operators read last keep signing in", zap.Error(err))
		} else {
			log.Info("console tokens reloaded", zap.Int("operators", len(c.operators())))
		}
	}
	pbs, err := loadPlaybooks(r.w.settings.playbooks)
	if err == nil {
		err = r.runnable(pbs)
	}
	r.w.metrics.PlaybooksLoaded(true, err == nil, time.Now())
	if err != nil {
		var problems playbook.Problems
		if errors.As(err, &problems) {
			lines := make([]string, len(problems))
			for i, p := range problems {
				lines[i] = p.String()
			}
			log.Error("playbooks not reloaded: the last good set keeps serving", zap.Strings("problems", lines))
		} else {
			log.Error("playbooks not reloaded: the last good set keeps serving", zap.Error(err))
		}
		return err
	}
	r.eng.SetPlaybooks(pbs)
	r.w.metrics.Batched(batchedActions(pbs, r.w.settings.maxInFlight, log)...)
	names := make([]string, len(pbs))
	for i, pb := range pbs {
		names[i] = pb.Name
	}
	log.Info("playbooks reloaded", zap.Strings("playbooks", names))
	return nil
}

// runnable refuses playbooks that need a vendor the worker did not configure at start: its
// credentials were checked then, and a reload cannot add them.
func (r *reloader) runnable(pbs []*playbook.Playbook) error {
	var missing []string
	for _, pb := range pbs {
		for _, st := range pb.Steps {
			if _, ok := r.w.vendors.registry.Lookup(st.Action); !ok {
				missing = append(missing, fmt.Sprintf("%s: playbook %q step %q: action %s needs a vendor this worker did not configure at start; restart it with that vendor's settings",
					pb.File, pb.Name, st.ID, st.Action))
			}
		}
	}
	if len(missing) > 0 {
		return errors.New(strings.Join(missing, "\n"))
	}
	return nil
}

// watch reloads on SIGHUP (hup) and on changes under the playbooks directory, until ctx ends.
// The files are watched before it returns, so no change made after it is missed.
func (r *reloader) watch(ctx context.Context, hup <-chan os.Signal) {
	changes := make(chan struct{}, 1)
	fw, err := r.watchFiles(ctx, changes)
	if err != nil {
		r.w.log.Warn("playbook files are not watched; reload with SIGHUP or POST /-/reload", zap.Error(err))
	}
	go r.loop(ctx, hup, changes, fw)
}

func (r *reloader) loop(ctx context.Context, hup <-chan os.Signal, changes <-chan struct{}, fw *fsnotify.Watcher) {
	if fw != nil {
		defer fw.Close()
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_ = r.reload("SIGHUP")
		case <-changes:
			debounce = time.After(reloadDebounce)
		case <-debounce:
			debounce = nil
			_ = r.reload("file change")
		}
	}
}

func (r *reloader) watchFiles(ctx context.Context, changes chan<- struct{}) (*fsnotify.Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	root := r.w.settings.playbooks
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			err = fw.Add(path)
		}
		return err
	})
	if err != nil {
		fw.Close()
		return nil, err
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-fw.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Create) {
					if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
						_ = fw.Add(ev.Name)
					}
				}
				select {
				case changes <- struct{}{}:
				default:
				}
			case err, ok := <-fw.Errors:
				if !ok {
					return
				}
				r.w.log.Warn("watching the playbooks", zap.Error(err))
			}
		}
	}()
	return fw, nil
}
