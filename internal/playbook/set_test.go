package playbook

import (
	"fmt"
	"testing"
)

// A Set remembers the answers for a bounded number of subjects; past the bound it still
// answers, looking each subject up.
func TestSetRemembersABoundedNumberOfSubjects(t *testing.T) {
	t.Parallel()
	a := &Playbook{Name: "a", On: []string{"soar.alerts.>"}}
	b := &Playbook{Name: "b", On: []string{"soar.alerts.*.phishing"}}
	set := NewSet([]*Playbook{a, b})
	for i := range seenMax + 100 {
		subject := fmt.Sprintf("soar.alerts.s%d.phishing", i)
		for range 2 {
			if got := set.Matching(subject); len(got) != 2 || got[0] != a || got[1] != b {
				t.Fatalf("Matching(%q) = %v, want a and b", subject, names(got))
			}
		}
	}
	if got := set.Matching("soar.alerts.x.login"); len(got) != 1 || got[0] != a {
		t.Errorf("past the bound: %v, want a", names(got))
	}
	if n := set.nseen.Load(); n != seenMax {
		t.Errorf("%d subjects remembered, want the bound %d", n, seenMax)
	}
}

// The slice Matching gives is shared by every alert on the subject: appending to it must copy
// it, not write into room the next caller would see.
func TestSetMatchingHasNoSpareCapacity(t *testing.T) {
	t.Parallel()
	a := &Playbook{Name: "a", On: []string{"soar.alerts.>"}}
	b := &Playbook{Name: "b", On: []string{"soar.alerts.*.phishing"}}
	c := &Playbook{Name: "c", On: []string{"soar.alerts.edr.*"}}
	set := NewSet([]*Playbook{a, b, c})
	for _, subject := range []string{"soar.alerts.edr.phishing", "soar.alerts..phishing"} {
		for range 2 { // looked up, then remembered
			if got := set.Matching(subject); len(got) == 0 || cap(got) != len(got) {
				t.Errorf("Matching(%q): %d playbooks, capacity %d", subject, len(got), cap(got))
			}
		}
	}
}
