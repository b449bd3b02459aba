package s3emu

import (
	"net/http/httptest"
	"testing"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		method, target, copySource string
		name, action, stats        string
		unsupported                bool
	}{
		{"GET", "/", "", "ListBuckets", "s3:ListAllMyBuckets", "ListBuckets", false},
		{"GET", "/b?list-type=2&prefix=p%2F", "", "ListObjects", "s3:ListBucket", "ListObjects", false},
		{"GET", "/b", "", "ListObjects", "s3:ListBucket", "ListObjects", false},
		{"HEAD", "/b", "", "HeadBucket", "s3:ListBucket", "HeadBucket", false},
		{"PUT", "/b", "", "CreateBucket", "s3:CreateBucket", "CreateBucket", false},
		{"DELETE", "/b", "", "DeleteBucket", "s3:DeleteBucket", "Other", false},
		{"GET", "/b?location", "", "GetBucketLocation", "s3:GetBucketLocation", "GetBucketLocation", false},
		{"GET", "/b?uploads", "", "ListMultipartUploads", "s3:ListBucketMultipartUploads", "Other", false},
		{"POST", "/b?delete", "", "DeleteObjects", "s3:DeleteObject", "DeleteObjects", false},
		{"GET", "/b?acl", "", "Other", "", "Other", true},
		{"PUT", "/b?policy", "", "Other", "", "Other", true},
		{"GET", "/b/k/x.bin?x-id=GetObject", "", "GetObject", "s3:GetObject", "GetObject", false},
		{"GET", "/b/k?versionId=3", "", "GetObject", "s3:GetObjectVersion", "GetObject", false},
		{"HEAD", "/b/k", "", "HeadObject", "s3:GetObject", "HeadObject", false},
		{"PUT", "/b/k?x-id=PutObject", "", "PutObject", "s3:PutObject", "PutObject", false},
		{"PUT", "/b/k", "/b/src", "CopyObject", "s3:PutObject", "CopyObject", false},
		{"DELETE", "/b/k", "", "DeleteObject", "s3:DeleteObject", "DeleteObject", false},
		{"POST", "/b/k?uploads", "", "CreateMultipartUpload", "s3:PutObject", "CreateMultipartUpload", false},
		{"PUT", "/b/k?partNumber=1&uploadId=u", "", "UploadPart", "s3:PutObject", "UploadPart", false},
		{"PUT", "/b/k?partNumber=1&uploadId=u", "b/src", "UploadPartCopy", "s3:PutObject", "Other", true},
		{"POST", "/b/k?uploadId=u", "", "CompleteMultipartUpload", "s3:PutObject", "CompleteMultipartUpload", false},
		{"DELETE", "/b/k?uploadId=u", "", "AbortMultipartUpload", "s3:AbortMultipartUpload", "AbortMultipartUpload", false},
		{"GET", "/b/k?uploadId=u", "", "ListParts", "s3:ListMultipartUploadParts", "ListParts", false},
		{"PUT", "/b/k?acl", "", "PutObjectAcl", "s3:PutObjectAcl", "PutObjectAcl", false},
		{"GET", "/b/k?acl", "", "GetObjectAcl", "s3:GetObjectAcl", "GetObjectAcl", false},
		{"PUT", "/b/k?tagging", "", "Other", "", "Other", true}, // gofakes3 would overwrite the object
		{"POST", "/b/k?select&select-type=2", "", "Other", "", "Other", true},
		{"OPTIONS", "/b/k", "", "Other", "", "Other", true},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(tc.method, tc.target, nil)
		if tc.copySource != "" {
			r.Header.Set("X-Amz-Copy-Source", tc.copySource)
		}
		o := classify(r)
		if o.name != tc.name || o.action != tc.action || o.statsName() != tc.stats || o.unsupported != tc.unsupported {
			t.Errorf("%s %s: %s %s %s unsupported=%v, want %s %s %s %v", tc.method, tc.target,
				o.name, o.action, o.statsName(), o.unsupported, tc.name, tc.action, tc.stats, tc.unsupported)
		}
	}
}

func TestClassifyParsesNames(t *testing.T) {
	r := httptest.NewRequest("PUT", "/b/dir/a%20b%2Bc.txt", nil)
	r.Header.Set("X-Amz-Copy-Source", "/src-bucket/d/x%2By%20z.bin?versionId=7")
	o := classify(r)
	if o.bucket != "b" || o.key != "dir/a b+c.txt" {
		t.Errorf("bucket %q key %q", o.bucket, o.key)
	}
	if o.copySource == nil || *o.copySource != (objectRef{"src-bucket", "d/x+y z.bin"}) || !o.copySourceVersioned {
		t.Errorf("copy source %+v versioned=%v", o.copySource, o.copySourceVersioned)
	}
	r = httptest.NewRequest("PUT", "/b/k", nil)
	r.Header.Set("X-Amz-Copy-Source", "no-key")
	if o := classify(r); !o.badCopySource {
		t.Error("a copy source without a key was accepted")
	}
}

func TestGrantAllows(t *testing.T) {
	read := &Grant{Bucket: "bkt", BaseKey: "u/f"}
	write := &Grant{Bucket: "bkt", BaseKey: "u/f", Write: true}
	whole := &Grant{Bucket: "bkt"}
	obj := func(name, action, key string) operation {
		return operation{name: name, action: action, bucket: "bkt", key: key}
	}
	listing := func(prefix string) operation {
		return operation{name: "ListObjects", action: "s3:ListBucket", bucket: "bkt", prefix: prefix}
	}
	copyOp := func(srcBucket, srcKey string) operation {
		o := obj("CopyObject", "s3:PutObject", "u/f/dst")
		o.copySource = &objectRef{srcBucket, srcKey}
		return o
	}
	cases := []struct {
		name  string
		g     *Grant
		o     operation
		allow bool
	}{
		{"read in scope", read, obj("GetObject", "s3:GetObject", "u/f/a"), true},
		{"read deep in scope", read, obj("HeadObject", "s3:GetObject", "u/f/x/y/z"), true},
		{"read of the base key itself", read, obj("GetObject", "s3:GetObject", "u/f"), false},
		{"read of a sibling sharing a prefix", read, obj("GetObject", "s3:GetObject", "u/ff/a"), false},
		{"read in another bucket", read, operation{name: "GetObject", action: "s3:GetObject", bucket: "other", key: "u/f/a"}, false},
		{"read of a version", read, obj("GetObject", "s3:GetObjectVersion", "u/f/a"), false},
		{"owner.txt", write, obj("GetObject", "s3:GetObject", "u/f/owner.txt"), false},
		{"owner.txt deeper is an ordinary file", read, obj("GetObject", "s3:GetObject", "u/f/d/owner.txt"), true},
		{"owner.txt at the root of a whole-bucket grant", whole, obj("GetObject", "s3:GetObject", "owner.txt"), false},
		{"whole-bucket read anywhere", whole, obj("GetObject", "s3:GetObject", "x/y"), true},
		{"put with read grant", read, obj("PutObject", "s3:PutObject", "u/f/a"), false},
		{"put with write grant", write, obj("PutObject", "s3:PutObject", "u/f/a"), true},
		{"put outside with write grant", write, obj("PutObject", "s3:PutObject", "u/g/a"), false},
		{"delete", write, obj("DeleteObject", "s3:DeleteObject", "u/f/a"), true},
		{"abort", write, obj("AbortMultipartUpload", "s3:AbortMultipartUpload", "u/f/a"), true},
		{"list parts", write, obj("ListParts", "s3:ListMultipartUploadParts", "u/f/a"), true},
		{"list parts with read grant", read, obj("ListParts", "s3:ListMultipartUploadParts", "u/f/a"), false},
		{"object acl", write, obj("PutObjectAcl", "s3:PutObjectAcl", "u/f/a"), true},
		{"get object acl", write, obj("GetObjectAcl", "s3:GetObjectAcl", "u/f/a"), false},
		{"list baseKey", read, listing("u/f"), true},
		{"list baseKey/", read, listing("u/f/"), true},
		{"list below", read, listing("u/f/sub/x"), true},
		{"list empty prefix", read, listing(""), false},
		{"list a sibling sharing a prefix", read, listing("u/ff"), false},
		{"list a parent", read, listing("u/"), false},
		{"list everything with a whole-bucket grant", whole, listing(""), true},
		{"head bucket", read, operation{name: "HeadBucket", action: "s3:ListBucket", bucket: "bkt"}, false},
		{"head bucket with a whole-bucket grant", whole, operation{name: "HeadBucket", action: "s3:ListBucket", bucket: "bkt"}, true},
		{"bucket location", whole, operation{name: "GetBucketLocation", action: "s3:GetBucketLocation", bucket: "bkt"}, false},
		{"list buckets", whole, operation{name: "ListBuckets", action: "s3:ListAllMyBuckets"}, false},
		{"create bucket", write, operation{name: "CreateBucket", action: "s3:CreateBucket", bucket: "bkt"}, false},
		{"list multipart uploads", write, operation{name: "ListMultipartUploads", action: "s3:ListBucketMultipartUploads", bucket: "bkt"}, false},
		{"copy in scope", write, copyOp("bkt", "u/f/src"), true},
		{"copy from outside", write, copyOp("bkt", "u/g/src"), false},
		{"copy from another bucket", write, copyOp("other", "u/f/src"), false},
		{"copy of owner.txt", write, copyOp("bkt", "u/f/owner.txt"), false},
		{"copy with read grant", read, copyOp("bkt", "u/f/src"), false},
		{"unknown operation", write, operation{name: "Other", bucket: "bkt", key: "u/f/a"}, false},
	}
	for _, tc := range cases {
		if got := tc.g.allows(tc.o); got != tc.allow {
			t.Errorf("%s: allowed=%v, want %v", tc.name, got, tc.allow)
		}
	}
}

func TestDeleteAllowed(t *testing.T) {
	g := &Grant{Bucket: "bkt", BaseKey: "u/f", Write: true}
	cases := []struct {
		name  string
		objs  []deleteObject
		allow bool
	}{
		{"all inside", []deleteObject{{Key: "u/f/a"}, {Key: "u/f/b/c"}}, true},
		{"one outside", []deleteObject{{Key: "u/f/a"}, {Key: "u/g/b"}}, false},
		{"owner.txt", []deleteObject{{Key: "u/f/owner.txt"}}, false},
		{"a version", []deleteObject{{Key: "u/f/a", VersionID: "v1"}}, false},
		{"the null version is a version too", []deleteObject{{Key: "u/f/a", VersionID: "null"}}, false},
	}
	for _, tc := range cases {
		if got := g.deleteAllowed("bkt", tc.objs); got != tc.allow {
			t.Errorf("%s: allowed=%v, want %v", tc.name, got, tc.allow)
		}
	}
	if (&Grant{Bucket: "bkt", BaseKey: "u/f"}).allows(operation{name: "DeleteObjects", bucket: "bkt"}) {
		t.Error("a read grant may start a DeleteObjects")
	}
}
