package s3emu

import (
	"net/http"
	"net/url"
	"strings"
)

// operation is what a request asks for, worked out from method, path and
// query the way S3 routes requests. It drives the policy check, the stats
// and the few operations answered here rather than by gofakes3.
type operation struct {
	name   string // S3 API name, e.g. "GetObject", "UploadPartCopy"
	action string // IAM action the policy is checked against, "" if none applies
	bucket string
	key    string

	// prefix is the s3:prefix condition key of a listing.
	prefix string
	// copySource names the object a copy reads; copySourceVersioned says
	// it names a version (a different IAM action).
	copySource          *objectRef
	copySourceVersioned bool
	badCopySource       bool // x-amz-copy-source present but unreadable

	// unsupported operations are answered NotImplemented after the policy
	// check, because gofakes3 would misroute them (an object PUT with
	// ?tagging would overwrite the object, for one).
	unsupported bool
}

type objectRef struct{ bucket, key string }

// statsNames are the operations Stats reports by name; all others are
// counted as "Other".
var statsNames = map[string]bool{
	"GetObject": true, "HeadObject": true, "ListObjects": true, "PutObject": true,
	"CopyObject": true, "CreateMultipartUpload": true, "UploadPart": true,
	"CompleteMultipartUpload": true, "AbortMultipartUpload": true, "ListParts": true,
	"DeleteObject": true, "DeleteObjects": true, "PutObjectAcl": true, "GetObjectAcl": true,
	"HeadBucket": true, "ListBuckets": true, "CreateBucket": true, "GetBucketLocation": true,
}

func (o operation) statsName() string {
	if statsNames[o.name] {
		return o.name
	}
	return "Other"
}

// unsupportedSubresources are query keys that select S3 APIs gofakes3 does
// not implement. Presence alone selects them, as in S3.
var unsupportedSubresources = []string{
	"accelerate", "analytics", "attributes", "cors", "encryption", "intelligent-tiering",
	"inventory", "legal-hold", "lifecycle", "logging", "metadataTable", "metrics",
	"notification", "object-lock", "ownershipControls", "policy", "policyStatus",
	"publicAccessBlock", "renameObject", "replication", "requestPayment", "restore",
	"retention", "select", "session", "tagging", "torrent", "website",
}

// classify names the operation of r. Requests that fit no S3 operation are
// "Other" and unsupported.
func classify(r *http.Request) operation {
	path := strings.TrimPrefix(r.URL.Path, "/")
	bucket, key, _ := strings.Cut(path, "/")
	q := r.URL.Query()
	has := func(k string) bool { _, ok := q[k]; return ok }
	o := operation{bucket: bucket, key: key}
	set := func(name, action string) operation {
		o.name, o.action = name, action
		return o
	}
	other := func() operation {
		o.name, o.unsupported = "Other", true
		return o
	}
	m := r.Method

	if bucket == "" {
		if m == http.MethodGet && onlySDKQuery(q) {
			return set("ListBuckets", "s3:ListAllMyBuckets")
		}
		return other()
	}

	for _, sub := range unsupportedSubresources {
		if has(sub) {
			return other()
		}
	}

	if key == "" {
		switch {
		case has("acl"):
			return other()
		case has("uploads"):
			if m == http.MethodGet {
				return set("ListMultipartUploads", "s3:ListBucketMultipartUploads")
			}
		case has("location"):
			if m == http.MethodGet {
				return set("GetBucketLocation", "s3:GetBucketLocation")
			}
		case has("versioning"):
			switch m {
			case http.MethodGet:
				return set("GetBucketVersioning", "s3:GetBucketVersioning")
			case http.MethodPut:
				return set("PutBucketVersioning", "s3:PutBucketVersioning")
			}
		case has("versions"):
			if m == http.MethodGet {
				o.prefix = q.Get("prefix")
				return set("ListObjectVersions", "s3:ListBucketVersions")
			}
		case has("delete"):
			if m == http.MethodPost {
				return set("DeleteObjects", "s3:DeleteObject")
			}
		default:
			switch m {
			case http.MethodGet:
				o.prefix = q.Get("prefix")
				return set("ListObjects", "s3:ListBucket")
			case http.MethodHead:
				return set("HeadBucket", "s3:ListBucket")
			case http.MethodPut:
				return set("CreateBucket", "s3:CreateBucket")
			case http.MethodDelete:
				return set("DeleteBucket", "s3:DeleteBucket")
			case http.MethodPost:
				return set("PostObject", "s3:PutObject")
			}
		}
		return other()
	}

	if src := r.Header.Get("X-Amz-Copy-Source"); src != "" && m == http.MethodPut {
		o.copySource, o.copySourceVersioned = parseCopySource(src)
		o.badCopySource = o.copySource == nil
	}
	switch {
	case has("uploadId"):
		switch m {
		case http.MethodGet:
			return set("ListParts", "s3:ListMultipartUploadParts")
		case http.MethodPut:
			if o.copySource != nil || o.badCopySource {
				o.unsupported = true // gofakes3 has no UploadPartCopy
				return set("UploadPartCopy", "s3:PutObject")
			}
			return set("UploadPart", "s3:PutObject")
		case http.MethodPost:
			return set("CompleteMultipartUpload", "s3:PutObject")
		case http.MethodDelete:
			return set("AbortMultipartUpload", "s3:AbortMultipartUpload")
		}
	case has("uploads"):
		if m == http.MethodPost {
			return set("CreateMultipartUpload", "s3:PutObject")
		}
	case has("acl"):
		switch m {
		case http.MethodGet:
			return set("GetObjectAcl", "s3:GetObjectAcl")
		case http.MethodPut:
			return set("PutObjectAcl", "s3:PutObjectAcl")
		}
	default:
		// IAM wants the *Version actions whenever a version is named, "null"
		// included.
		versioned := q.Get("versionId") != ""
		switch m {
		case http.MethodGet:
			if versioned {
				return set("GetObject", "s3:GetObjectVersion")
			}
			return set("GetObject", "s3:GetObject")
		case http.MethodHead:
			if versioned {
				return set("HeadObject", "s3:GetObjectVersion")
			}
			return set("HeadObject", "s3:GetObject")
		case http.MethodPut:
			if o.copySource != nil || o.badCopySource {
				return set("CopyObject", "s3:PutObject")
			}
			return set("PutObject", "s3:PutObject")
		case http.MethodDelete:
			if versioned {
				return set("DeleteObject", "s3:DeleteObjectVersion")
			}
			return set("DeleteObject", "s3:DeleteObject")
		}
	}
	return other()
}

// onlySDKQuery reports whether q holds nothing but parameters SDKs add for
// their own bookkeeping (x-id) or listing parameters of ListBuckets.
func onlySDKQuery(q url.Values) bool {
	for k := range q {
		switch k {
		case "x-id", "max-buckets", "continuation-token", "prefix", "bucket-region":
		default:
			return false
		}
	}
	return true
}

// parseCopySource reads x-amz-copy-source: "bucket/key" or "/bucket/key",
// URL-encoded, optionally with "?versionId=...". nil if malformed.
func parseCopySource(src string) (*objectRef, bool) {
	src, query, _ := strings.Cut(src, "?")
	versioned := false
	if v, err := url.ParseQuery(query); err == nil && v.Get("versionId") != "" {
		versioned = true
	}
	dec, err := url.PathUnescape(strings.TrimPrefix(src, "/"))
	if err != nil {
		return nil, false
	}
	b, k, ok := strings.Cut(dec, "/")
	if !ok || b == "" || k == "" {
		return nil, false
	}
	return &objectRef{bucket: b, key: k}, versioned
}
