package synapsetest

// Known differences from the real service, kept in one place so that a test
// that passes here for the wrong reason can be traced:
//
//   - Anonymous callers (no token) see nothing: the emulator has no public
//     entities.
//   - Only Projects, Folders and FileEntities exist; other types are refused
//     with 400 on create and match nothing when listed.
//   - PUT /entity with a new dataFileHandleId whose MD5 equals the current
//     one's replaces the handle of the current version instead of making a
//     new version.
//   - POST /storageLocation de-duplicates identical settings of one user
//     (the real service does so by a hash of the setting; the exact fields
//     hashed are not known).
//   - S3 DeleteObjects is refused as a whole when any key is outside the
//     policy; AWS answers per key.
//   - The throttle keys anonymous callers together, not per address.
//   - With Options.DataDir only the S3 objects live on disk; the repository
//     (entities, handles, settings) is in memory and gone on restart.
//   - Tokens never expire; every token of AddUser has all scopes.
