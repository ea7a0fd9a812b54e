"""The panel's page: one self-contained HTML file (no fonts, scripts or images from outside).

Meters and numbers follow the server-sent events; the controls POST to ``/control``. Laid out
in one column that fits a phone's screen (from 320 px wide) and spreads to two on a desktop.
"""

from __future__ import annotations

import json

from stream_sep.settings import OPTIONS

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stream-sep</title>
<style>
*{box-sizing:border-box}
body{margin:0;font:16px system-ui,sans-serif;background:#111;color:#eee}
main{max-width:760px;margin:auto;padding:12px;display:grid;gap:12px;
grid-template-columns:repeat(auto-fit,minmax(280px,1fr));align-items:start}
section{background:#1d1d1d;border-radius:10px;padding:12px}
h1{font-size:18px;margin:0 0 8px}h2{font-size:14px;margin:0 0 8px;color:#aaa;font-weight:500}
.meter{display:grid;grid-template-columns:3em 1fr 5em;align-items:center;gap:8px;margin:6px 0}
.bar{height:14px;background:#333;border-radius:7px;overflow:hidden}
.bar i{display:block;height:100%;width:0;background:linear-gradient(90deg,#2a7,#dc3 80%,#e43)}
.row{display:flex;gap:8px;flex-wrap:wrap;align-items:center}
button{flex:1;min-width:5em;padding:12px 8px;font:inherit;border:0;border-radius:8px;
background:#333;color:#eee}
button.on{background:#2a7;color:#000;font-weight:600}button:disabled{opacity:.4}
input[type=range]{width:100%}
dl{display:grid;grid-template-columns:auto 1fr;gap:4px 12px;margin:0;font-size:14px}
dt{color:#aaa}dd{margin:0;font-variant-numeric:tabular-nums}
#controls{grid-row:span 2}
#message{color:#f86;min-height:1.2em;font-size:14px}#link{font-size:12px;color:#aaa}
</style></head><body><main>
<section><h1>stream-sep <span id="link">connecting</span></h1>
<div class="meter" id="meter-in"><span>in</span><div class="bar"><i></i></div><span>-inf dB</span></div>
<div class="meter" id="meter-out"><span>out</span><div class="bar"><i></i></div><span>-inf dB</span></div>
<div class="meter" id="meter-mic" hidden><span>mic</span><div class="bar"><i></i></div><span>-inf dB</span></div>
</section>
<section id="controls"><h2>Mode</h2><div class="row">
__MODE_BUTTONS__</div>
<h2 style="margin-top:12px">Vocal level <span id="level-value"></span></h2>
<input id="vocal-level" type="range" __VOCAL_LEVEL_RANGE__ step="0.05" value="0">
<h2>Key <span id="key-value"></span></h2><div class="row">
<button id="key-down">&minus; key</button><button id="key-up">+ key</button></div>
<div id="mic-controls" hidden><h2 style="margin-top:12px">Microphone <span id="mic-value"></span></h2>
<input id="mic-level" type="range" __MIC_LEVEL_RANGE__ step="0.05" value="1"></div>
<div id="message" role="status"></div></section>
<section><h2>Numbers</h2><dl>
<dt>latency</dt><dd id="latency"></dd><dt>terms</dt><dd id="terms"></dd>
<dt>mic latency</dt><dd id="mic-latency"></dd>
<dt>inference</dt><dd id="inference"></dd><dt>load</dt><dd id="load"></dd>
<dt>misses</dt><dd id="misses"></dd><dt>shed</dt><dd id="shed"></dd>
<dt>xruns</dt><dd id="xruns"></dd><dt>running</dt><dd id="seconds"></dd></dl></section>
</main><script>
const Q="?token="+encodeURIComponent(__TOKEN__),$=i=>document.getElementById(i);
let state={};
function meter(n,p){const e=$("meter-"+n);if(p===undefined)return;e.hidden=false;
const d=p>0?20*Math.log10(p):-Infinity,t=isFinite(d)?d.toFixed(1):"-inf";
e.children[1].firstChild.style.width=Math.max(0,Math.min(100,(d+60)/0.6))+"%";
e.dataset.db=t;e.children[2].textContent=t+" dB"}
const ms=s=>(s*1000).toFixed(0)+" ms";
function show(s){state=s;meter("in",s.input_peak);meter("out",s.output_peak);meter("mic",s.mic_peak);
for(const b of document.querySelectorAll("[data-mode]"))b.classList.toggle("on",b.dataset.mode===s.mode);
const v=$("vocal-level");if(document.activeElement!==v)v.value=s.vocal_level;
$("level-value").textContent=s.mode==="karaoke"?Number(s.vocal_level).toFixed(2):"("+s.mode+")";
const k=s.key;$("key-value").textContent=k===null?"off (start with --key 0)":(k>0?"+":"")+k;
$("key-down").disabled=$("key-up").disabled=k===null;
if(s.mic_level!==undefined){$("mic-controls").hidden=false;const m=$("mic-level");
if(document.activeElement!==m)m.value=s.mic_level;$("mic-value").textContent="x"+Number(s.mic_level).toFixed(2)}
if(s.latency!==undefined){$("latency").textContent=ms(s.latency)+" ("+s.latency_samples+" samples)";
$("terms").textContent=Object.entries(s.latency_terms).map(([a,b])=>a+" "+ms(b)).join(" + ");
$("mic-latency").textContent=s.mic_latency===undefined?"no mic":s.mic_latency===null?"not reported by the device":ms(s.mic_latency);
$("inference").textContent=s.inference_ms.toFixed(0)+" ms";$("load").textContent=s.load.toFixed(2);
$("misses").textContent=s.misses;$("shed").textContent=s.shed;
$("xruns").textContent=s.xruns+(s.xrun_note?" ("+s.xrun_note+")":"");$("seconds").textContent=s.seconds.toFixed(1)+" s"}}
async function send(o){const r=await fetch("/control"+Q,{method:"POST",
headers:{"Content-Type":"application/json"},body:JSON.stringify(o)});
if(r.ok){$("message").textContent="";show(Object.assign(state,await r.json()))}else $("message").textContent=await r.text()}
for(const b of document.querySelectorAll("[data-mode]"))b.onclick=()=>send({mode:b.dataset.mode});
$("vocal-level").oninput=e=>send({vocal_level:Number(e.target.value)});
$("mic-level").oninput=e=>send({mic_level:Number(e.target.value)});
$("key-down").onclick=()=>send({key:Math.max(__KEY_LOW__,state.key-1)});
$("key-up").onclick=()=>send({key:Math.min(__KEY_HIGH__,state.key+1)});
const es=new EventSource("/events"+Q);es.onmessage=e=>{$("link").textContent="live";show(JSON.parse(e.data))};
es.onerror=()=>{$("link").textContent="disconnected"};
</script></body></html>
"""


def page(token: str) -> str:
    """The page with ``token`` in its requests; its controls' choices and limits are those of
    :data:`stream_sep.settings.OPTIONS`."""
    mode, key = OPTIONS["mode"], OPTIONS["key"]
    filled = {
        "__MODE_BUTTONS__": "\n".join(
            f'<button id="mode-{name}" data-mode="{name}">{name}</button>' for name in mode.choices
        ),
        "__VOCAL_LEVEL_RANGE__": _range("vocal_level"),
        "__MIC_LEVEL_RANGE__": _range("mic_level"),
        "__KEY_LOW__": str(key.low),
        "__KEY_HIGH__": str(key.high),
        "__TOKEN__": json.dumps(token),
    }
    text = _PAGE
    for placeholder, value in filled.items():
        text = text.replace(placeholder, value)
    return text


def _range(name: str) -> str:
    """The ``min`` and ``max`` attributes of a slider for the option ``name``."""
    option = OPTIONS[name]
    return f'min="{option.low:g}" max="{option.high:g}"'
