package s3emu

import (
	"maps"
	"sync"
)

// Stats say what clients asked of the endpoint, so tests and benchmarks can
// state what an operation cost in requests and bytes.
type Stats struct {
	// Ops is keyed by operation: GetObject, HeadObject, ListObjects (v1 and
	// v2), PutObject, CopyObject, CreateMultipartUpload, UploadPart,
	// CompleteMultipartUpload, AbortMultipartUpload, ListParts,
	// DeleteObject, DeleteObjects, PutObjectAcl, GetObjectAcl, HeadBucket,
	// ListBuckets, CreateBucket, GetBucketLocation, Other. Refused and
	// fault-injected requests count too.
	Ops map[string]OpStats `json:"ops"`
	// Denied counts requests the emulator refused itself (authentication,
	// policy, body verification, unsupported operations, multipart
	// completion checks, missing keys hidden from grants) by S3 error code.
	Denied map[string]int64 `json:"denied"`
}

// OpStats are the counters of one operation.
type OpStats struct {
	Requests int64 `json:"requests"`
	BytesIn  int64 `json:"bytesIn"`  // request body bytes read, as sent (aws-chunked framing included)
	BytesOut int64 `json:"bytesOut"` // response body bytes written to the connection
}

type stats struct {
	mu     sync.Mutex
	ops    map[string]OpStats
	denied map[string]int64
}

func newStats() stats {
	return stats{ops: map[string]OpStats{}, denied: map[string]int64{}}
}

func (st *stats) record(op string, in, out int64, deniedCode string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	o := st.ops[op]
	o.Requests++
	o.BytesIn += in
	o.BytesOut += out
	st.ops[op] = o
	if deniedCode != "" {
		st.denied[deniedCode]++
	}
}

// Stats returns a snapshot of the counters since New or the last ResetStats.
func (s *Server) Stats() Stats {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	return Stats{Ops: maps.Clone(s.stats.ops), Denied: maps.Clone(s.stats.denied)}
}

// ResetStats zeroes every counter.
func (s *Server) ResetStats() {
	s.stats.mu.Lock()
	defer s.stats.mu.Unlock()
	s.stats.ops = map[string]OpStats{}
	s.stats.denied = map[string]int64{}
}
