package playbook

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats-server/v2/server/gsl"
)

// Set is the playbooks a worker runs, in their order, with their `on` filters in the subject
// index the NATS server routes messages with: the playbooks of an alert's subject are found in
// one walk of the index, not by matching the subject against every filter of every playbook.
type Set struct {
	books []*Playbook
	index *gsl.GenericSublist[int] // filter → position in books
	loose []bool                   // by position: has a filter the index did not take

	// seen remembers the answer for the subjects alerts arrive on, which are few (a subject
	// per source and kind of alert), up to seenMax of them: past it, the rest (a producer that
	// puts ids in subjects) are looked up every time.
	seen  sync.Map // subject → []*Playbook
	nseen atomic.Int32
}

const seenMax = 4096

// NewSet indexes pbs, whose order it keeps. A filter the index does not take (the loader
// rejects them all) leaves its playbook matched filter by filter.
func NewSet(pbs []*Playbook) *Set {
	s := &Set{books: pbs, index: gsl.NewSublist[int](), loose: make([]bool, len(pbs))}
	for i, pb := range pbs {
		for _, f := range pb.On {
			if s.index.Insert(f, i) != nil {
				s.loose[i] = true
				_ = s.index.Insert(">", i) // found for every subject, then matched filter by filter
			}
		}
	}
	return s
}

// All is every playbook of the set, in order.
func (s *Set) All() []*Playbook { return s.books }

// Matching is the playbooks whose filters match subject, in the set's order, each once. The
// slice is shared: the caller must not change it.
func (s *Set) Matching(subject string) []*Playbook {
	if m, ok := s.seen.Load(subject); ok {
		return m.([]*Playbook)
	}
	// Clipped, so that a caller appending to the shared slice copies it rather than writing
	// into its spare capacity.
	m := slices.Clip(s.match(subject))
	if s.nseen.Load() < seenMax {
		if _, had := s.seen.LoadOrStore(subject, m); !had {
			s.nseen.Add(1)
		}
	}
	return m
}

// match is the playbooks whose filters match subject, in the set's order, each once.
func (s *Set) match(subject string) []*Playbook {
	var out []*Playbook
	if !server.IsValidLiteralSubject(subject) {
		// The index finds nothing for a subject with an empty token ("a..b"), which the
		// server's own matching may still match ("a..b" and ">"): such a subject (no stream
		// captures it, but `worker test` may be given one) is matched filter by filter.
		for _, pb := range s.books {
			if pb.MatchesSubject(subject) {
				out = append(out, pb)
			}
		}
		return out
	}
	var at [64]int // on the stack for up to 64 matches
	found := at[:0]
	s.index.Match(subject, func(i int) { found = append(found, i) })
	slices.Sort(found)
	for j, i := range found {
		if j > 0 && found[j-1] == i {
			continue // a playbook with two filters that both match
		}
		if !s.loose[i] || s.books[i].MatchesSubject(subject) {
			out = append(out, s.books[i])
		}
	}
	return out
}
