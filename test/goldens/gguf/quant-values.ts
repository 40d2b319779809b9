/**
 * Values that exercise the Q8_0/Q4_0 quantizers' edge cases, 64 blocks of 32: zeros, subnormals,
 * magnitudes from 1e-6 to 1e6, blocks whose largest magnitude occurs twice with both signs (Q4_0 takes
 * the first), all-equal blocks, values whose x·id lands near the rounding points. Deterministic.
 */
export function QUANT_EDGE_VALUES(): Float32Array {
  const x = new Float32Array(64 * 32);
  let s = 20240601;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let b = 0; b < 64; b++) {
    const block = x.subarray(b * 32, (b + 1) * 32);
    const scale = Math.pow(10, (b % 13) - 6);
    for (let j = 0; j < 32; j++) block[j] = (rnd() - 0.5) * 2 * scale;
    if (b % 8 === 1) block.fill(0);
    if (b % 8 === 2) for (let j = 0; j < 32; j++) block[j] = (rnd() - 0.5) * 1e-40; // subnormals
    if (b % 8 === 3) { block[5] = 3 * scale; block[20] = -3 * scale; } // tie in magnitude, positive first
    if (b % 8 === 4) { block[5] = -3 * scale; block[20] = 3 * scale; } // tie in magnitude, negative first
    if (b % 8 === 5) block.fill(0.7 * scale); // all equal
    if (b % 8 === 6) for (let j = 0; j < 32; j++) block[j] = ((j % 17) - 8) / 8 * scale + (j % 2 ? 1e-7 : -1e-7) * scale; // near the grid's half points
  }
  return x;
}

/**
 * Rows of 256 values for the k-quants and Q4_1/Q5_0/Q5_1 (one k-quant super-block a row): magnitudes
 * from 1e-3 to 1e2, a zero row, rows of one sign (the mins of the asymmetric types), a row with a few
 * large values among small ones. Deterministic; no subnormals or overflows (whose NaN bits C and
 * JavaScript write differently).
 */
export function KQUANT_VALUES(): Float32Array {
  const x = new Float32Array(8 * 256);
  let s = 777;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (let r = 0; r < 8; r++) {
    const row = x.subarray(r * 256, (r + 1) * 256);
    const scale = [1e-3, 0.02, 0.5, 1, 7, 100, 0.3, 2][r];
    for (let j = 0; j < 256; j++) row[j] = (rnd() - 0.5) * 2 * scale;
    if (r === 1) row.fill(0, 0, 128);
    if (r === 3) for (let j = 0; j < 256; j++) row[j] = Math.abs(row[j]) + 0.25;
    if (r === 4) for (let j = 0; j < 256; j++) row[j] = -Math.abs(row[j]);
    if (r === 7) for (let j = 0; j < 256; j += 37) row[j] = 40 * (j % 2 ? 1 : -1);
  }
  return x;
}
