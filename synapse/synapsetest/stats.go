package synapsetest

import (
	"net/http"
	"sync"

	"github.com/synfs/synfs/synapse/synapsetest/s3emu"
)

// Stats say what was asked of the emulator, so a test or a benchmark can
// state what an operation cost. Served as JSON at GET /__emulator/stats.
type Stats struct {
	// Synapse counts requests per endpoint pattern, e.g.
	// "POST /repo/v1/entity/children", throttled and failed ones included.
	Synapse      map[string]int64 `json:"synapse"`
	SynapseTotal int64            `json:"synapseTotal"`
	Throttled    int64            `json:"throttled"` // answered 429 by the throttle (injected 429s not included)
	Unauthorized int64            `json:"unauthorized"`
	// S3 counts requests and bytes per S3 operation (GetObject, PutObject, ...).
	S3 map[string]s3emu.OpStats `json:"s3"`
	// S3Denied counts refused S3 requests by AWS error code.
	S3Denied map[string]int64 `json:"s3Denied"`
}

type restStats struct {
	mu           sync.Mutex
	byEndpoint   map[string]int64
	total        int64
	throttled    int64
	unauthorized int64
}

func newRESTStats() *restStats { return &restStats{byEndpoint: map[string]int64{}} }

func (rs *restStats) count(r *http.Request, mux *http.ServeMux, status int) {
	_, pattern := mux.Handler(r)
	if pattern == "" || pattern == "/" {
		pattern = r.Method + " (unknown)"
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.byEndpoint[pattern]++
	rs.total++
	if status == http.StatusUnauthorized {
		rs.unauthorized++
	}
}

// throttle counts a 429 of the throttle itself (not an injected fault).
func (rs *restStats) throttle() {
	rs.mu.Lock()
	rs.throttled++
	rs.mu.Unlock()
}

// Stats is a snapshot of the counters since the start or the last ResetStats.
func (s *Server) Stats() Stats {
	s.stats.mu.Lock()
	out := Stats{Synapse: map[string]int64{}, SynapseTotal: s.stats.total, Throttled: s.stats.throttled, Unauthorized: s.stats.unauthorized}
	for k, v := range s.stats.byEndpoint {
		out.Synapse[k] = v
	}
	s.stats.mu.Unlock()
	s3 := s.s3.Stats()
	out.S3, out.S3Denied = s3.Ops, s3.Denied
	return out
}

// ResetStats zeroes every counter.
func (s *Server) ResetStats() {
	s.stats.mu.Lock()
	s.stats.byEndpoint, s.stats.total, s.stats.throttled, s.stats.unauthorized = map[string]int64{}, 0, 0, 0
	s.stats.mu.Unlock()
	s.s3.ResetStats()
}
