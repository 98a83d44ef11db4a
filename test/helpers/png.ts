/**
 * A small PNG reader for tests (screenshots that weston-screenshooter writes): 8-bit greyscale,
 * RGB, grey+alpha and RGBA, not interlaced, which is what cairo writes. Anything else is refused
 * with a plain message rather than decoded wrongly.
 */
import { inflateSync } from 'zlib';

export interface Image {
  width: number;
  height: number;
  /** width * height * 4 bytes: R, G, B, A per pixel, rows top to bottom. */
  rgba: Buffer;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Channels per colour type (PNG spec, IHDR). */
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 4: 2, 6: 4 };
/** Screenshots are a few MiB at most; refuse absurd headers before allocating. */
const MAX_PIXELS = 64 * 1024 * 1024;

export class PngError extends Error {}

export function decodePng(file: Buffer): Image {
  if (file.length < SIGNATURE.length || !file.subarray(0, 8).equals(SIGNATURE)) throw new PngError('not a PNG file (bad signature)');
  let offset = 8;
  let header: { width: number; height: number; depth: number; type: number; interlace: number } | undefined;
  const data: Buffer[] = [];
  while (offset + 8 <= file.length) {
    const length = file.readUInt32BE(offset);
    const type = file.toString('latin1', offset + 4, offset + 8);
    const body = file.subarray(offset + 8, offset + 8 + length);
    if (body.length !== length) throw new PngError(`truncated ${type} chunk`);
    offset += 12 + length; // length, type, body, CRC
    if (type === 'IHDR') {
      header = { width: body.readUInt32BE(0), height: body.readUInt32BE(4), depth: body[8], type: body[9], interlace: body[12] };
    } else if (type === 'IDAT') data.push(body);
    else if (type === 'IEND') break;
  }
  if (!header) throw new PngError('no IHDR chunk');
  const { width, height, depth, type, interlace } = header;
  const channels = CHANNELS[type];
  if (depth !== 8 || channels === undefined || interlace !== 0) {
    throw new PngError(`unsupported PNG: bit depth ${depth}, colour type ${type}, interlace ${interlace} (8-bit grey/RGB/RGBA, not interlaced, only)`);
  }
  if (width === 0 || height === 0 || width * height > MAX_PIXELS) throw new PngError(`unsupported PNG size ${width}x${height}`);
  const raw = inflateSync(Buffer.concat(data));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new PngError(`image data too short: ${raw.length} bytes for ${width}x${height}`);
  const pixels = unfilter(raw, width, height, channels);
  const rgba = Buffer.alloc(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    const p = i * channels;
    const [r, g, b, a] = channels === 1 ? [pixels[p], pixels[p], pixels[p], 255]
      : channels === 2 ? [pixels[p], pixels[p], pixels[p], pixels[p + 1]]
        : channels === 3 ? [pixels[p], pixels[p + 1], pixels[p + 2], 255]
          : [pixels[p], pixels[p + 1], pixels[p + 2], pixels[p + 3]];
    rgba[i * 4] = r; rgba[i * 4 + 1] = g; rgba[i * 4 + 2] = b; rgba[i * 4 + 3] = a;
  }
  return { width, height, rgba };
}

/** Undoes the per-row filters (None, Sub, Up, Average, Paeth) with bpp = channels bytes. */
function unfilter(raw: Buffer, width: number, height: number, bpp: number): Buffer {
  const stride = width * bpp;
  const out = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = y * (stride + 1) + 1;
    const row = y * stride;
    const prev = row - stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? out[row + x - bpp] : 0;
      const b = y > 0 ? out[prev + x] : 0;
      const c = x >= bpp && y > 0 ? out[prev + x - bpp] : 0;
      let predictor: number;
      switch (filter) {
        case 0: predictor = 0; break;
        case 1: predictor = a; break;
        case 2: predictor = b; break;
        case 3: predictor = (a + b) >> 1; break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new PngError(`bad filter type ${filter} in row ${y}`);
      }
      out[row + x] = (raw[src + x] + predictor) & 0xff;
    }
  }
  return out;
}

/** The pixel at (x, y) as 0xRRGGBB (alpha dropped). */
export function rgbAt(image: Image, x: number, y: number): number {
  const i = (y * image.width + x) * 4;
  return (image.rgba[i] << 16) | (image.rgba[i + 1] << 8) | image.rgba[i + 2];
}
