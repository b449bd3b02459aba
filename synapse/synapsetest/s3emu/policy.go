package s3emu

import "strings"

// The session policy Synapse attaches to vended credentials, as far as it
// matters to a client (see synapse-api.md, STS):
//
//	s3:ListBucket on the bucket, only with s3:prefix StringLike [baseKey, baseKey/*]
//	s3:GetObject on bucket/baseKey/*
//	read_write adds s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload,
//	  s3:ListMultipartUploadParts, s3:PutObjectAcl on bucket/baseKey/*
//	explicit Deny of everything on bucket/baseKey/owner.txt
//
// An empty baseKey means the whole bucket, without the prefix condition.
// Anything not allowed is denied, as IAM does.

// readActions and writeActions are the object actions the policy allows.
var (
	readActions  = map[string]bool{"s3:GetObject": true}
	writeActions = map[string]bool{
		"s3:GetObject": true, "s3:PutObject": true, "s3:DeleteObject": true,
		"s3:AbortMultipartUpload": true, "s3:ListMultipartUploadParts": true,
		"s3:PutObjectAcl": true,
	}
)

// ownerKey is the object Synapse reserves to prove bucket ownership; vended
// credentials may never touch it.
func (g *Grant) ownerKey() string {
	if g.BaseKey == "" {
		return "owner.txt"
	}
	return g.BaseKey + "/owner.txt"
}

// objectAllowed reports whether the policy allows action on key in bucket.
func (g *Grant) objectAllowed(action, bucket, key string) bool {
	actions := readActions
	if g.Write {
		actions = writeActions
	}
	if !actions[action] || bucket != g.Bucket || key == g.ownerKey() {
		return false
	}
	return g.BaseKey == "" || strings.HasPrefix(key, g.BaseKey+"/")
}

// listAllowed applies the s3:prefix condition of s3:ListBucket. A request
// without a prefix (HeadBucket, a listing of everything) fails the
// condition unless the grant covers the whole bucket.
func (g *Grant) listAllowed(bucket, prefix string) bool {
	if bucket != g.Bucket {
		return false
	}
	return g.BaseKey == "" || prefix == g.BaseKey || strings.HasPrefix(prefix, g.BaseKey+"/")
}

// seesMissingKeys reports whether S3 tells this grant that a key of
// bucket does not exist. S3 answers a GetObject or HeadObject of a missing
// key with 404 NoSuchKey only to callers allowed s3:ListBucket on the
// bucket, 403 AccessDenied to others; such a request carries no s3:prefix,
// so the prefix condition fails and only whole-bucket grants see 404. A
// client that reads AccessDenied on a GET as "bad credentials" is wrong
// against S3, and must be wrong here too.
func (g *Grant) seesMissingKeys(bucket string) bool { return g.listAllowed(bucket, "") }

// allows reports whether the policy allows o. DeleteObjects is allowed
// here only as far as the bucket goes; its keys, in the body, go through
// deleteAllowed.
func (g *Grant) allows(o operation) bool {
	switch o.name {
	case "ListObjects":
		return g.listAllowed(o.bucket, o.prefix)
	case "HeadBucket":
		return g.listAllowed(o.bucket, "")
	case "DeleteObjects":
		return g.Write && o.bucket == g.Bucket
	case "CopyObject", "UploadPartCopy":
		if o.copySource == nil || o.copySourceVersioned {
			return false
		}
		if !g.objectAllowed("s3:GetObject", o.copySource.bucket, o.copySource.key) {
			return false
		}
	}
	if o.key == "" || o.action == "" {
		return false // every other bucket-level or unknown operation
	}
	return g.objectAllowed(o.action, o.bucket, o.key)
}

// deleteAllowed checks the keys of a DeleteObjects request: one key
// outside the policy denies the whole request.
func (g *Grant) deleteAllowed(bucket string, objs []deleteObject) bool {
	for _, d := range objs {
		action := "s3:DeleteObject"
		if d.VersionID != "" {
			action = "s3:DeleteObjectVersion"
		}
		if !g.objectAllowed(action, bucket, d.Key) {
			return false
		}
	}
	return true
}
