"""Two WebRTC peer connections in one headless Chromium page, forced through a TURN server
(`iceTransportPolicy: "relay"`): a data channel that echoes and an audio track (an oscillator)
from the first to the second. For each TURN server given, prints what the browser saw: the
selected candidate pair's types and relay protocol, the echo, and the audio packets received
per second.

Usage: webrtc_relay.py SERVERS_JSON
SERVERS_JSON: [{"name", "urls", "username", "credential"}, ...]
"""

import asyncio
import json
import sys

from cdp import chromium

CALL = r"""
(async (ice) => {
  const cfg = {iceServers: [ice], iceTransportPolicy: "relay"};
  const a = new RTCPeerConnection(cfg), b = new RTCPeerConnection(cfg);
  a.onicecandidate = e => { if (e.candidate) b.addIceCandidate(e.candidate); };
  b.onicecandidate = e => { if (e.candidate) a.addIceCandidate(e.candidate); };
  const ctx = new AudioContext();
  const osc = ctx.createOscillator();
  const dst = ctx.createMediaStreamDestination();
  osc.connect(dst);
  osc.start();
  a.addTrack(dst.stream.getAudioTracks()[0], dst.stream);
  b.ondatachannel = e => { e.channel.onmessage = m => e.channel.send("echo:" + m.data); };
  const dc = a.createDataChannel("echo");
  const echoed = new Promise(res => { dc.onmessage = m => res(m.data); });
  dc.onopen = () => dc.send("hello through the relay");
  const offer = await a.createOffer();
  await a.setLocalDescription(offer);
  await b.setRemoteDescription(offer);
  const answer = await b.createAnswer();
  await b.setLocalDescription(answer);
  await a.setRemoteDescription(answer);
  const timeout = ms => new Promise((_, no) => setTimeout(() => no(new Error("timed out")), ms));
  let echo = null, error = null;
  try { echo = await Promise.race([echoed, timeout(20000)]); } catch (e) { error = String(e); }
  const received = async () => {
    let n = 0;
    (await b.getStats()).forEach(r => { if (r.type === "inbound-rtp" && r.kind === "audio") n = r.packetsReceived; });
    return n;
  };
  const p0 = await received();
  await new Promise(r => setTimeout(r, 4000));
  const p1 = await received();
  const stats = await a.getStats();
  let pair = null;
  stats.forEach(r => { if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
  const local = pair ? stats.get(pair.localCandidateId) : null;
  const remote = pair ? stats.get(pair.remoteCandidateId) : null;
  a.close(); b.close(); ctx.close();
  return {
    echo, error,
    audio_packets_per_s: (p1 - p0) / 4,
    local_type: local && local.candidateType,
    remote_type: remote && remote.candidateType,
    relay_protocol: local && local.relayProtocol,
    local_address: local && (local.address + ":" + local.port),
  };
})
"""


async def run(servers):
    results = {}
    args = ["--autoplay-policy=no-user-gesture-required", "--ignore-certificate-errors"]
    async with chromium(args) as b:
        for s in servers:
            ice = {"urls": s["urls"], "username": s["username"], "credential": s["credential"]}
            try:
                results[s["name"]] = await b.eval(f"{CALL}({json.dumps(ice)})", timeout=60)
            except Exception as e:  # one server's failure is a result, not the end
                results[s["name"]] = {"error": str(e)}
    return results


def main():
    servers = json.loads(sys.argv[1])
    print(json.dumps(asyncio.run(asyncio.wait_for(run(servers), 300))))


if __name__ == "__main__":
    main()
