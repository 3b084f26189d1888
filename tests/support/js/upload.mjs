// Upload a file (or standard input, of a length not known beforehand) with tus-js-client, as a
// scientist's uploader would. Options come as one JSON argument; progress and the result are
// printed as JSON lines. With "storage", the upload's URLs are kept in that file, so that a run
// killed mid-way is resumed by the next run from where the server stands.
import fs from 'node:fs'
import * as tus from 'tus-js-client'

const options = JSON.parse(process.argv[2])
const say = (record) => process.stdout.write(JSON.stringify(record) + '\n')

const input = options.file === '-' ? process.stdin : fs.createReadStream(options.file)
const upload = new tus.Upload(input, {
  endpoint: options.endpoint,
  headers: { 'X-Http-Authed-User': options.user || 'dmlb2001', ...(options.headers || {}) },
  chunkSize: options.chunkSize || Infinity,
  parallelUploads: options.parallel || 1,
  uploadLengthDeferred: Boolean(options.deferred),
  uploadDataDuringCreation: Boolean(options.dataDuringCreation),
  retryDelays: [0, 500, 1000, 2000],
  metadata: { filename: 'bundle.tar' },
  urlStorage: options.storage ? new tus.FileUrlStorage(options.storage) : undefined,
  storeFingerprintForResuming: Boolean(options.storage),
  removeFingerprintOnSuccess: true,
  onProgress: (sent, total) => say({ progress: sent, total }),
  onError: (error) => { say({ error: String(error) }); process.exit(1) },
  onSuccess: () => { say({ url: upload.url }); process.exit(0) },
})

if (options.storage) {
  const previous = await upload.findPreviousUploads()
  if (previous.length > 0) {
    say({ resuming: previous[0].uploadUrl || previous[0].parallelUploadUrls })
    upload.resumeFromPreviousUpload(previous[0])
  }
}
upload.start()
