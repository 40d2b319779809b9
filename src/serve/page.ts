/**
 * The page `mka serve` shows: loads stock tfjs and the exported GraphModel, tokenizes the prompt in the
 * browser with @huggingface/tokenizers (BOS as mka's tokenizer adds it, from /api/config), and generates
 * greedily, one full forward pass per token (the GraphModel has no KV cache), showing the text as it
 * grows. With ?prompt=...&max_new_tokens=N it runs at once; with &report=1 it posts the generated ids to
 * /api/result (the browser test uses this); ?backend=cpu (or webgl) picks tfjs's backend instead of its default.
 */
export const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>mka serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #1d2330; }
  h1 { font-size: 1.3rem; margin-bottom: .2rem; } .meta { color: #667; font-size: .85rem; margin-top: 0; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; padding: .5rem; min-height: 4.5rem; }
  .row { display: flex; gap: .8rem; align-items: center; margin: .6rem 0; }
  button { font: inherit; padding: .35rem 1.1rem; } input[type=number] { width: 4.5rem; font: inherit; }
  #out { white-space: pre-wrap; background: #f4f6fa; border-radius: 6px; padding: .8rem; min-height: 3rem; }
  #out b { color: #1f5fbf; font-weight: 600; } #status { color: #667; font-size: .85rem; }
</style>
<script src="/tf.min.js"></script></head>
<body>
<h1>mka serve</h1>
<p class="meta" id="meta">loading the model...</p>
<textarea id="prompt">Once upon a time</textarea>
<div class="row"><button id="go" disabled>Generate</button>
  <label>new tokens <input id="n" type="number" min="1" value="24"></label><span id="status"></span></div>
<div id="out"></div>
<script type="module">
import { Tokenizer } from '/tokenizers.mjs';
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const [cfg, tokJson, tokCfg] = await Promise.all(['/api/config', '/tokenizer/tokenizer.json', '/tokenizer/tokenizer_config.json'].map((u) => fetch(u).then((r) => r.json())));
const tokenizer = new Tokenizer(tokJson, tokCfg);
if (params.has('backend') && !(await tf.setBackend(params.get('backend')))) $('meta').textContent = 'tfjs has no backend ' + params.get('backend');
const model = await tf.loadGraphModel('/model/model.json');
await tf.ready();
$('meta').textContent = cfg.description + ' | tfjs backend ' + tf.getBackend();
$('go').disabled = false;

function encode(text) {
  const ids = tokenizer.encode(text, { add_special_tokens: false }).ids;
  return cfg.addBos ? [cfg.bos, ...ids] : ids;
}

async function generate(prompt, maxNew) {
  const ids = encode(prompt);
  const promptIds = [...ids];
  const out = [];
  const escape = (s) => s.replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]);
  for (let i = 0; i < maxNew && ids.length < cfg.maxSeq; i++) {
    const next = tf.tidy(() => {
      const logits = model.predict(tf.tensor2d([ids], [1, ids.length], 'int32')); // [1, T, V]
      return logits.slice([0, ids.length - 1, 0], [1, 1, -1]).reshape([-1]).argMax().dataSync()[0];
    });
    ids.push(next);
    out.push(next);
    const shown = tokenizer.decode(promptIds, { skip_special_tokens: true });
    const all = tokenizer.decode([...promptIds, ...out], { skip_special_tokens: true });
    $('out').innerHTML = escape(shown) + '<b>' + escape(all.slice(shown.length)) + '</b>'; // decoded together: spaces at the seam stay
    $('status').textContent = (i + 1) + ' tokens';
    await new Promise((ok) => setTimeout(ok, 0));
    if (cfg.eos.includes(next)) break;
  }
  return out;
}

$('go').onclick = async () => {
  $('go').disabled = true;
  try { await generate($('prompt').value, Number($('n').value)); } finally { $('go').disabled = false; }
};

if (params.has('prompt')) {
  $('prompt').value = params.get('prompt');
  $('n').value = params.get('max_new_tokens') ?? $('n').value;
  const result = {};
  try {
    result.ids = await generate(params.get('prompt'), Number($('n').value));
    result.text = tokenizer.decode(result.ids, { skip_special_tokens: true });
    result.backend = tf.getBackend();
  } catch (e) {
    result.error = String(e && e.stack || e);
  }
  if (params.has('report')) await fetch('/api/result', { method: 'POST', body: JSON.stringify(result) });
}
</script></body></html>
`;
