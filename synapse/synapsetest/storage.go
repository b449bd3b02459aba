package synapsetest

import (
	"fmt"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3afero"
)

// dirBackend keeps S3 objects as files under dir (buckets/ and metadata/),
// for data sets too large to hold in memory. The Synapse side stays in
// memory: a restarted emulator starts with an empty repository.
func dirBackend(dir string) (gofakes3.Backend, error) {
	fs, err := s3afero.FsPath(dir, s3afero.FsPathCreateAll)
	if err != nil {
		return nil, fmt.Errorf("synapsetest: data dir %s: %w", dir, err)
	}
	b, err := s3afero.MultiBucket(fs)
	if err != nil {
		return nil, fmt.Errorf("synapsetest: data dir %s: %w", dir, err)
	}
	return b, nil
}
