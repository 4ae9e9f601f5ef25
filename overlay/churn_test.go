package overlay

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// TestSurvivesLosingAThird kills 30 % of the nodes abruptly; after one
// refresh interval every registration whose hosting node is alive must be
// found from every surviving node.
func TestSurvivesLosingAThird(t *testing.T) {
	const refresh = 2 * time.Second
	tn := newTestNet(t, testNodes, func(c *Config) { c.RefreshInterval = refresh })
	type reg struct {
		aor  string
		host int
	}
	var regs []reg
	for i := range 40 {
		host := i % testNodes
		aor := fmt.Sprintf("sip:user%d@test.overlay", i)
		register(t, tn.nodes[host], aor, mustKey(t), binding("d", fmt.Sprintf("sip:u%d@10.0.0.%d", i, host), time.Hour))
		regs = append(regs, reg{aor, host})
	}
	dead := map[int]bool{}
	for _, i := range rand.Perm(testNodes)[:testNodes*3/10] {
		dead[i] = true
		tn.kill(i)
	}
	time.Sleep(refresh + refresh/2)
	checked, found := 0, 0
	for _, r := range regs {
		if dead[r.host] {
			continue
		}
		for i, n := range tn.nodes {
			if dead[i] {
				continue
			}
			checked++
			if got := lookupLive(t, n, r.aor); len(got) == 1 {
				found++
			} else {
				t.Errorf("node %d cannot find %s (hosted by %d)", i, r.aor, r.host)
			}
		}
	}
	t.Logf("after killing %d of %d nodes: %d/%d lookups found", len(dead), testNodes, found, checked)
}
