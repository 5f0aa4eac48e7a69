// Long-polling bodies of Engine.IO protocol 3, encoded and decoded by the
// clients' own engine.io-parser (1.3.2 inside socket.io-client 1.7.4, 2.2.1
// inside 2.3.1). Reads one JSON array of jobs on stdin, writes one JSON
// array of results:
//   {parser, encode: [packets], binary}  -> {text} or {base64}
//   {parser, decode: text | {base64}}    -> {packets} or {error}
// A packet is {type, data} with data a string, or {base64} for bytes.
"use strict";

const path = require("path");

const parsers = {
  1: require(path.join(require.resolve("socket.io-client-1"), "../../node_modules/engine.io-parser")),
  2: require(path.join(require.resolve("socket.io-client-2"), "../../node_modules/engine.io-parser")),
};

function toParser(pkt) {
  const data = pkt.data && pkt.data.base64 !== undefined ? Buffer.from(pkt.data.base64, "base64") : pkt.data;
  return { type: pkt.type, data };
}

function fromParser(pkt) {
  const data = Buffer.isBuffer(pkt.data) || pkt.data instanceof ArrayBuffer
    ? { base64: Buffer.from(pkt.data).toString("base64") }
    : pkt.data;
  return { type: pkt.type, data };
}

function run(job) {
  const parser = parsers[job.parser];
  let result;
  if (job.encode) {
    parser.encodePayload(job.encode.map(toParser), job.binary, (encoded) => {
      result = typeof encoded === "string" ? { text: encoded } : { base64: encoded.toString("base64") };
    });
    return result;
  }
  const input = typeof job.decode === "string" ? job.decode : Buffer.from(job.decode.base64, "base64");
  const packets = [];
  parser.decodePayload(input, (pkt) => {
    if (pkt.type === "error") {
      result = { error: pkt.data };
      return false;
    }
    packets.push(fromParser(pkt));
    return true;
  });
  return result || { packets };
}

let input = "";
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => process.stdout.write(JSON.stringify(JSON.parse(input).map(run))));
