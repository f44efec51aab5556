//! [`JpegDecoder`] on real MJPEG footage (ffmpeg-made), on JPEGs from the `image` crate and
//! from libjpeg-turbo's `cjpeg` (embedded below), against zune-jpeg as the reference decoder;
//! plus robustness (random truncation and bit flips) and a count of heap allocations per
//! frame.

mod util;

use std::time::Instant;
use util::thread_alloc::{allocations_in, ThreadCountingAllocator};

use edgewatch::capture::jpeg::{self, JpegDecoder, JpegError};
use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;
use proptest::prelude::*;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

#[global_allocator]
static ALLOCATOR: ThreadCountingAllocator = ThreadCountingAllocator;

// Made with libjpeg-turbo 2.1.5's `cjpeg -quality 85` (the last one `-quality 2`) from one
// 38x22 synthetic picture (gradients, a disc, noise), so MCUs are padded on both axes. All
// but the `-optimize` one use the Annex K Huffman tables.
/// 4:2:2 (`-sample 2x1`), a restart marker after every MCU (`-restart 1B`): 8 of them.
const S422_RESTART_EACH_MCU: &str = "\
ffd8ffe000104a46494600010100000100010000ffdb0043000503040404030504040405050506070c08070707070f0b\
0b090c110f1212110f111113161c1713141a1511111821181a1d1d1f1f1f13172224221e241c1e1f1effdb0043010505\
050706070e08080e1e1411141e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e\
1e1e1e1e1e1e1e1e1e1e1e1e1e1effc00011080016002603012100021101031101ffc4001f0000010501010101010100\
000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203000411051221\
31410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a\
434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a9293949596979899\
9aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1\
f2f3f4f5f6f7f8f9faffc4001f0100030101010101010101010000000000000102030405060708090a0bffc400b51100\
020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f015\
6272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4\
c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffdd00040001ffda000c0301000211\
0311003f00e934ef8c3696fa501346a3e5ee2b9497e2ae8ba9eacaaf123166e98ea6be53867806ad394aaad1239fc4ce\
0cc453a387c351d5bb688fffd0f4af0a7c43f03436c90dd6d8a56c2e1a16c03ee7181f53587e3af14781e7baf29bc869\
09c045c67a77f4ff00ebd7365352197c6ae3a33e650b68b76dec95fbd9fc937d19e271c70e67791e49470d24d37e69ed\
becd9fffd1ed3c27a1f84b54b632c8600a46428c6dfca8afc6339cc339ccb1b3c4e22ee527e765d92ec96c8ae18a5995\
1cae94127b1fffd2ebbc67f0774f8ec488245071eb5e527e14cda1bcfadc7b9c5b0248504e41e09fc0124fa015eae519\
cf2e4989f6ba5e12577a6e9a2f30e3d78ae2dc0616a6ded209f97bcb53ffd3e3323a9eb5c86afe02f145d6bf24f089d5\
2590b85208c02735e264b3a30c437576b1fa978b59ae1b0784c352aefe39bd3d16bf9abfaa3fffd4c4f0bf853c6363a7\
aae26e40eb9a2b47472fa8f9ac8fdeb27c4e52b034934b647fffd5e63c7ff1935dd3e311fceeec085cb71c7ad45f0ebe\
2c6af7778925ca97e7206781f41dabbf8e32ba53a2f2aa3eec23672fef36ae97f85269ebf6bd133b71dc1185c6714a9b\
efa1ffd6b1aa78e346b3b74920f0ae9914cb865923b4895948e84103834be0ef1ec37da903369e793edfe35c3927093f\
abba92a8dbf36d9e6f89592623179ed0a756bca4a3b7336ede97d8ffd7f78b3f12e9ed6519fecce807a7a5157478767c\
9f19e855c157a0d538cf4497567fffd9";

/// 4:4:0 (`-sample 1x2`), a restart marker after every MCU row (`-restart 1`).
const S440_RESTART_EACH_ROW: &str = "\
ffd8ffe000104a46494600010100000100010000ffdb0043000503040404030504040405050506070c08070707070f0b\
0b090c110f1212110f111113161c1713141a1511111821181a1d1d1f1f1f13172224221e241c1e1f1effdb0043010505\
050706070e08080e1e1411141e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e\
1e1e1e1e1e1e1e1e1e1e1e1e1e1effc00011080016002603011200021101031101ffc4001f0000010501010101010100\
000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203000411051221\
31410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a\
434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a9293949596979899\
9aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1\
f2f3f4f5f6f7f8f9faffc4001f0100030101010101010101010000000000000102030405060708090a0bffc400b51100\
020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f015\
6272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4\
c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffdd00040005ffda000c0301000211\
0311003f00e934ef8c3696fa501346a3e5ee2ad78cfe0ee9f1d891048a0e3d6be572be14c831552ee2d1f639c66bc259\
6e0b955d687152fc55d1753d5955e2462cdd31d4d73c7e14cda1bcfadc7b9c5b0248504e41e09fc0124fa015f7f8fc83\
21ca32e96229eb25649376bb6d2ff836eb63f1ac8724e1de30cf69e12359c799bfc137f7bb5979f73dcbc29f10fc0d0d\
b24375b6295b0b8685b00fb9c607d4d78164753d6be03dbc5caee0bf1ff33fa6b03e1764d80a5ece84ea2f3725ff00c8\
a3d87c75e28f03cf75e53790d213808b8cf4efe9ff00d7af9bf57f0178a2eb5f927844ea92c85c290460139afb1c3e36\
73a2bea55152f57ccf6f3b2dfcbb7cff009af8a323c062f339e1a18e6f964d6fa68ede7f99f4b784f43f096a96c6590c\
0148c8518dbf95798785fc29e31b1d3d571372075cd7c8e69c378cccea7357c74a7eb2fc96c8fd5383f806861b0dcd1c\
65afe67fffd0e63c7ff1935dd3e311fceeec085cb71c7ad15fa5e7f85a196e0554c2c145bbeb65de2badedbbd8fabe3a\
ca303564e33a4adff0e45f0ebe2c6af7778925ca97e7206781f41da8afc6f39c061f1b2f69888f3bf36dfeba1e6f04f0\
ce53ed57ee22769aa78e346b3b74920f0ae9914cb865923b4895948e8410383453ca725c0ce7ef53bfcdff0099f47c7b\
87852c1ca30ba4d777fe62f83bc7b0df6a40cda79e4fb7f8d15f675726c0c29fbb4d2fbffccfe77c9327c14f1adba7d7\
cffccf6fb3f12e9ed6519fecce807a7a515e6e1f2cc2f33f73f17fe67ecb89c2d2a3462a9ab6dd5f63ffd9";

/// 4:2:0 (`-sample 2x2`), a restart marker every 2 MCUs (`-restart 2B`).
const S420_RESTART_2_MCUS: &str = "\
ffd8ffe000104a46494600010100000100010000ffdb0043000503040404030504040405050506070c08070707070f0b\
0b090c110f1212110f111113161c1713141a1511111821181a1d1d1f1f1f13172224221e241c1e1f1effdb0043010505\
050706070e08080e1e1411141e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e\
1e1e1e1e1e1e1e1e1e1e1e1e1e1effc00011080016002603012200021101031101ffc4001f0000010501010101010100\
000000000000000102030405060708090a0bffc400b5100002010303020403050504040000017d010203000411051221\
31410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a\
434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a9293949596979899\
9aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1\
f2f3f4f5f6f7f8f9faffc4001f0100030101010101010101010000000000000102030405060708090a0bffc400b51100\
020102040403040705040400010277000102031104052131061241510761711322328108144291a1b1c109233352f015\
6272d10a162434e125f11718191a262728292a35363738393a434445464748494a535455565758595a63646566676869\
6a737475767778797a82838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4\
c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffdd00040002ffda000c0301000211\
0311003f00e934ef8c3696fa501346a3e5ee2b9497e2ae8ba9eacaaf123166e98ea6bb5f19fc1dd3e3b12209141c7ad7\
949f8533686f3eb71ee716c0921413907827f00493e80572641c359050c156c624d38c5b4b6bb4b457f3278ba1c319c6\
6983c9e94dc39e518fded23dcbc29f10fc0d0db24375b6295b0b8685b00fb9c607d4d61f8ebc51e079eebca6f21a4270\
11719e9dfd3ffaf5e3d91d4f5ae4357f0178a2eb5f927844ea92c85c290460139ac327c572ce6a9da137b4aeecbbe8f7\
7db5d3b33ddf1278272bcab2cc3e168e2654d49d926d6b6f44be7a1fffd0ed3c27a1f84b54b632c8600a46428c6dfca8\
af30f0bf853c6363a7aae26e40eb9a2be3b1bc1d88c6d7957ab8c7293eaddd9f7d9070452a1975284719a5bb94fc7ff1\
935dd3e311fceeec085cb71c7ad45f0ebe2c6af7778925ca97e7206781f41da8a2bf4ae3ac15073fa9f2af66a317cbb2\
bf77dfe7b743c3c4e4196d7e2752a9453773ffd1b1aa78e346b3b74920f0ae9914cb865923b4895948e84103834be0ef\
1ec37da903369e793edfe34514f24c9b03f5572f67afabff00339fc46cbf0f5b3fa30a91ba5b5dbd3f13dbecfc4ba7b5\
9467fb33a01e9e94514576d1cb30bc9f07e2ff00ccf63134614e7cb0d1597567ffd9";

/// 4:4:4 (`-sample 1x1`) with optimized (not Annex K) Huffman tables (`-optimize`).
const S444_OPTIMIZED_TABLES: &str = "\
ffd8ffe000104a46494600010100000100010000ffdb0043000503040404030504040405050506070c08070707070f0b\
0b090c110f1212110f111113161c1713141a1511111821181a1d1d1f1f1f13172224221e241c1e1f1effdb0043010505\
050706070e08080e1e1411141e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e\
1e1e1e1e1e1e1e1e1e1e1e1e1e1effc00011080016002603011100021101031101ffc400190000020301000000000000\
000000000000060701030405ffc4002a1000010205030205050000000000000000010203000405061107213112511322\
416171158191d1e1ffc400190101010101010100000000000000000000070608040503ffc4002e110001020502040503\
05000000000000000102110003040506122107223141515261b1f01316713281a1d1e1ffda000c03010002110311003f\
0024a76b0ca4bd28079b48f2fa8830a6e1ead73796112760caa2a0e53da051dd55a2d4eac94ada428a95c63930934582\
cea590564b001c9f01eb19a2f188d7565c42253924ec0773d80ef0d1b5350ec666590ccd74b4eab09c2995601f738c0f\
931e1fd092a9a026775fc8f710e163e1e5fad74a7521881d35249fe0eff1a3877d5d163bf35e12bc05384e02138cf1eb\
dbfb1673ae1f6e4b65bae6f912438d9c6af283b789ddc02c603b314de26d4e80ecff003e7b45d69d0ed2aa4b175c2c04\
9190918e9fc40de4b90e43789af54a3a4332438486eece77dcee5ceececc05c60d4972a7a72403bf78a6f3d1da7b7224\
30e241c7784ec7eed34cc1a931739571226d352e930a93a52f50d6fd6dbea58960490904e41d89fb0249ec045a6577c9\
26c6b933084959480e4073a8161e2581dbf3119c2accd172ca642263004a839db729530fdcb01e24803731932393cc0e\
c6c371d4c0855ec2ba26abee3ec87d2875c2b09208c02731616a9f46240d403c649bfe536daebece4021435a80208208\
73b823a83d7d618f6bda978c8d3d29c3db81ce63a148b7cd53b0871c66a2d49a40e0463bff00592bb4f6c37e75ad4084\
e55b6dde2eee5434160909211aa64c074f9410dfab776e6761d599c75832cfb16a6a82503603fdfea2ad3ad58abcdce2\
1c99495ef9033b0f81e903b925966dde699d5531fab0df4a5db648ec361ea59c92778f1308e1dd1fd505260d2a97c51a\
4e5d0e316ad31a7938525c6e51a4a924704103631f2b5e253272d973891ea498b7ce692be4512e526a96ca0c79d4c410\
c41df705fbc4d9d7eb33d5205ea79dcfb7ee2cd5890952f95719bacd8a1995afafbfac3be4ee5a7aa49b3f4ce00edda3\
864638b0a3cf0debb5cea5909085fbc7ffd9";

/// Grayscale (`-grayscale`), a restart marker after every block (`-restart 1B`): 14, so
/// RST0..RST7 wrap around.
const GRAY_RESTART_EACH_BLOCK: &str = "\
ffd8ffe000104a46494600010100000100010000ffdb0043000503040404030504040405050506070c08070707070f0b\
0b090c110f1212110f111113161c1713141a1511111821181a1d1d1f1f1f13172224221e241c1e1f1effc0000b080016\
002601011100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc400b51000020103\
03020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c11552d1f024336272\
82090a161718191a25262728292a3435363738393a434445464748494a535455565758595a636465666768696a737475\
767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9\
cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffdd00040001ffda0008010100003f00e934\
ef8c3696fa501346a3e5ee2bffd0825f8aba2ea7ab2abc48c59ba63a9affd1f4af0a7c43f03436c90dd6d8a56c2e1a16\
c03ee7181f535fffd2ebbc75e28f03cf75e53790d213808b8cf4efe9ff00d7afffd3ed3c27a1f84b54b632c8600a4642\
8c6dfcabffd4ebbc67f0774f8ec488245071eb5fffd5e5cfc299b4379f5b8f738b60490a09c83c13f80249f402bfffd6\
e3323a9eb5ffd7f1dd5fc05e28bad7e49e113aa4b2170a411804e6bfffd0c4f0bf853c6363a7aae26e40eb9affd1e63c\
7ff1935dd3e311fceeec085cb71c7ad7ffd2e4fe1d7c58d5eeef124b952fce40cf03e83b57ffd3b1aa78e346b3b74920\
f0ae9914cb865923b4895948e84103835fffd4b3e0ef1ec37da903369e793edfe35fffd5f78b3f12e9ed6519fecce807\
a7a57fffd9";

/// 4:2:0 at `-quality 2`: quantizers above 255, so 16-bit DQT tables and an SOF1 header.
const S420_16BIT_DQT_SOF1: &str = "\
ffd8ffe000104a46494600010100000100010000ffdb00831001900113012c015e012c00fa0190015e0145015e01c201\
a9019001db025803e8028a025802260226025804c9036b039d02d503e805aa04fb05f505dc059104fb0578055f064007\
0808fc079e064006a4087f06bd055f057807d00aa507e9087f094709920a0f0a280a0f060e07850b090bd10af009c40b\
b808fc09dd0a0f09abffdb00831101a901c201c20258020d02580497028a028a049709ab06720578067209ab09ab09ab\
09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab\
09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09ab09abffc1\
0011080016002603012200021101031101ffc4001f000001050101010101010000000000000000010203040506070809\
0a0bffc400b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a10823\
42b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a\
636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7\
b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffc4001f010003\
0101010101010101010000000000000102030405060708090a0bffc400b5110002010204040304070504040001027700\
0102031104052131061241510761711322328108144291a1b1c109233352f0156272d10a162434e125f11718191a2627\
28292a35363738393a434445464748494a535455565758595a636465666768696a737475767778797a82838485868788\
898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2\
e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9faffda000c03010002110311003f0033466948a4c500c5c8a0914da3140343b8\
a293068a561d809a4068a29b10b9a01a28a018b45145007fffd9";

fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// The frames of an MJPEG elementary stream, each from SOI to EOI, found by walking the
/// marker segments (so bytes inside headers cannot be taken for markers).
fn mjpeg_frames(data: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    let mut start = 0;
    while start + 4 <= data.len() {
        assert_eq!(
            data[start..start + 2],
            [0xFF, 0xD8],
            "frame at byte {start}"
        );
        let mut pos = start + 2;
        loop {
            assert_eq!(data[pos], 0xFF, "marker expected at byte {pos}");
            let marker = data[pos + 1];
            pos += 2 + usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
            if marker == 0xDA {
                break;
            }
        }
        // In entropy-coded data the only FF followed by D9 is EOI.
        while !(data[pos] == 0xFF && data[pos + 1] == 0xD9) {
            pos += 1;
        }
        frames.push(&data[start..pos + 2]);
        start = pos + 2;
    }
    frames
}

fn clip(name: &str) -> Vec<u8> {
    let path = util::clips_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The marker segments of a JPEG from SOI up to and including SOS: (marker, offset of its FF,
/// offset after it).
fn header_segments(data: &[u8]) -> Vec<(u8, usize, usize)> {
    let mut segments = Vec::new();
    let mut pos = 2;
    loop {
        let marker = data[pos + 1];
        let next = pos + 2 + usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
        segments.push((marker, pos, next));
        if marker == 0xDA {
            return segments;
        }
        pos = next;
    }
}

/// `data` without its DHT segments, as Motion-JPEG ("AVI1") frames come.
fn without_dht(data: &[u8]) -> Vec<u8> {
    let mut out = data[..2].to_vec();
    let segments = header_segments(data);
    for &(marker, from, to) in &segments {
        if marker != 0xC4 {
            out.extend(&data[from..to]);
        }
    }
    out.extend(&data[segments.last().unwrap().2..]);
    out
}

/// Whether every Huffman table `data` defines is the Annex K one for its class and id.
fn has_annex_k_tables(data: &[u8]) -> bool {
    let mut found = 0;
    for (marker, from, to) in header_segments(data) {
        if marker != 0xC4 {
            continue;
        }
        let mut rest = &data[from + 4..to];
        while !rest.is_empty() {
            let counts = &rest[1..17];
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            let symbols = &rest[17..17 + total];
            let (std_counts, std_symbols): (&[u8], &[u8]) = match rest[0] {
                0x00 => (&jpeg::STD_DC_LUMA_COUNTS, &jpeg::STD_DC_LUMA_VALUES),
                0x01 => (&jpeg::STD_DC_CHROMA_COUNTS, &jpeg::STD_DC_CHROMA_VALUES),
                0x10 => (&jpeg::STD_AC_LUMA_COUNTS, &jpeg::STD_AC_LUMA_VALUES),
                0x11 => (&jpeg::STD_AC_CHROMA_COUNTS, &jpeg::STD_AC_CHROMA_VALUES),
                _ => return false,
            };
            if counts != std_counts || symbols != std_symbols {
                return false;
            }
            found += 1;
            rest = &rest[17 + total..];
        }
    }
    found > 0
}

fn count_restart_markers(data: &[u8]) -> usize {
    let scan = header_segments(data).last().unwrap().2;
    data[scan..]
        .windows(2)
        .filter(|w| w[0] == 0xFF && (0xD0..=0xD7).contains(&w[1]))
        .count()
}

fn decode(data: &[u8], width: u32, height: u32) -> Result<Vec<u8>, JpegError> {
    let mut decoder = JpegDecoder::new(width, height);
    let mut nv12 = vec![0; decoder.nv12_len()];
    decoder.decode(data, &mut nv12).map(|()| nv12)
}

/// zune-jpeg's decode as NV12: its Y unchanged, its full-resolution (upsampled) chroma
/// averaged over 2x2.
fn reference_nv12(data: &[u8]) -> (Vec<u8>, u32, u32) {
    let mut probe = zune_jpeg::JpegDecoder::new(ZCursor::new(data));
    probe.decode_headers().expect("zune-jpeg reads the headers");
    let out = match probe.input_colorspace() {
        Some(ColorSpace::Luma) => ColorSpace::Luma,
        _ => ColorSpace::YCbCr,
    };
    let options = DecoderOptions::default().jpeg_set_out_colorspace(out);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(data), options);
    let pixels = decoder.decode().expect("zune-jpeg decodes the frame");
    assert_eq!(decoder.output_colorspace(), Some(out));
    let info = decoder.info().unwrap();
    let (w, h) = (usize::from(info.width), usize::from(info.height));
    let channels = out.num_components();
    let mut nv12 = vec![128; w * h * 3 / 2];
    for i in 0..w * h {
        nv12[i] = pixels[i * channels];
    }
    if channels == 3 {
        for y in 0..h / 2 {
            for x in 0..w / 2 {
                for c in 1..3 {
                    let at = |dx: usize, dy: usize| {
                        u32::from(pixels[((2 * y + dy) * w + 2 * x + dx) * 3 + c])
                    };
                    let sum = at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1);
                    nv12[w * h + (y * w / 2 + x) * 2 + c - 1] = ((sum + 2) / 4) as u8;
                }
            }
        }
    }
    (nv12, w as u32, h as u32)
}

/// Which axes a frame's chroma is subsampled on.
#[derive(Debug, Clone, Copy)]
struct Subsampled {
    x: bool,
    y: bool,
}

const S420: Subsampled = Subsampled { x: true, y: true };
const S422: Subsampled = Subsampled { x: true, y: false };
const S440: Subsampled = Subsampled { x: false, y: true };
const S444: Subsampled = Subsampled { x: false, y: false };

/// Our chroma as zune-jpeg shows it. zune-jpeg upsamples subsampled chroma with a triangle
/// filter (3/4 nearest sample, 1/4 the next, edges replicated); averaged back over 2x2 that
/// is the native chroma blurred by [1, 6, 1] / 8 along each subsampled axis. Blurring our
/// (native) chroma the same way makes the two comparable sample by sample.
fn as_zune_sees_it(nv12: &[u8], width: u32, height: u32, sub: Subsampled) -> Vec<u8> {
    let (w, h) = ((width / 2) as usize, (height / 2) as usize);
    let luma = (width * height) as usize;
    let mut out = nv12.to_vec();
    let blur = |a: f64, b: f64, c: f64| (a + 6.0 * b + c) / 8.0;
    for c in 0..2 {
        let at = |x: usize, y: usize| f64::from(nv12[luma + (y * w + x) * 2 + c]);
        let mut rows = vec![0f64; w * h];
        for y in 0..h {
            for x in 0..w {
                rows[y * w + x] = match sub.x {
                    true => blur(
                        at(x.saturating_sub(1), y),
                        at(x, y),
                        at((x + 1).min(w - 1), y),
                    ),
                    false => at(x, y),
                };
            }
        }
        for y in 0..h {
            for x in 0..w {
                let p = |y: usize| rows[y * w + x];
                let v = match sub.y {
                    true => blur(p(y.saturating_sub(1)), p(y), p((y + 1).min(h - 1))),
                    false => p(y),
                };
                out[luma + (y * w + x) * 2 + c] = v.round() as u8;
            }
        }
    }
    out
}

/// Largest and mean absolute differences of the Y plane and of the UV plane. The last UV
/// row and column are left out: there zune-jpeg's upsampling filter reads the MCU padding
/// beyond the picture, which NV12 does not keep.
#[derive(Debug, Clone, Copy)]
struct Diff {
    y_max: u8,
    y_mean: f64,
    uv_max: u8,
    uv_mean: f64,
}

fn diff(a: &[u8], b: &[u8], width: u32, height: u32) -> Diff {
    let luma = (width * height) as usize;
    let half_w = (width / 2) as usize;
    let stats = |pairs: &mut dyn Iterator<Item = (u8, u8)>| {
        let (mut max, mut sum, mut n) = (0u8, 0u64, 0u64);
        for (p, q) in pairs {
            max = max.max(p.abs_diff(q));
            sum += u64::from(p.abs_diff(q));
            n += 1;
        }
        (max, sum as f64 / n.max(1) as f64)
    };
    let (y_max, y_mean) = stats(&mut a[..luma].iter().copied().zip(b[..luma].iter().copied()));
    let interior = |i: &usize| {
        let (x, y) = ((i / 2) % half_w, (i / 2) / half_w);
        x + 1 < half_w && y + 1 < (height / 2) as usize
    };
    let (uv_max, uv_mean) = stats(
        &mut (0..luma / 2)
            .filter(interior)
            .map(|i| (a[luma + i], b[luma + i])),
    );
    Diff {
        y_max,
        y_mean,
        uv_max,
        uv_mean,
    }
}

/// Decodes `data` with both decoders and says how far apart they are.
fn against_reference(data: &[u8], sub: Subsampled) -> Diff {
    let (reference, w, h) = reference_nv12(data);
    let ours = decode(data, w, h).expect("our decoder decodes the frame");
    diff(&as_zune_sees_it(&ours, w, h, sub), &reference, w, h)
}

/// Asserts that our decode of `data` is within rounding of zune-jpeg's.
fn assert_matches_reference(label: &str, data: &[u8], sub: Subsampled) -> Diff {
    let d = against_reference(data, sub);
    assert!(
        d.y_max <= 2 && d.y_mean < 0.1 && d.uv_max <= 2 && d.uv_mean < 0.5,
        "{label}: too far from zune-jpeg: {d:?}"
    );
    d
}

/// Compares frames of a clip with zune-jpeg, and checks that the comparison does tell
/// frames apart: our decode of the first frame against zune-jpeg's of the middle one fails.
fn clip_matches_reference(name: &str, width: u32, height: u32) {
    let data = clip(name);
    let frames = mjpeg_frames(&data);
    let (mut y_max, mut y_mean, mut uv_max, mut uv_mean) = (0, 0f64, 0, 0f64);
    let checked: Vec<usize> = (0..frames.len())
        .step_by(40)
        .chain([frames.len() - 1])
        .collect();
    for &i in &checked {
        let d = assert_matches_reference(&format!("{name} frame {i}"), frames[i], S420);
        y_max = y_max.max(d.y_max);
        uv_max = uv_max.max(d.uv_max);
        y_mean = y_mean.max(d.y_mean);
        uv_mean = uv_mean.max(d.uv_mean);
    }
    eprintln!(
        "{name}: {} frames vs zune-jpeg: Y max {y_max}, worst mean {y_mean:.4}; \
         UV max {uv_max}, worst mean {uv_mean:.4}",
        checked.len()
    );
    let ours = decode(frames[0], width, height).unwrap();
    let (other, _, _) = reference_nv12(frames[frames.len() / 2]);
    let d = diff(&ours, &other, width, height);
    assert!(
        d.y_mean > 5.0 && d.y_max > 100,
        "{name}: different frames look alike: {d:?}"
    );
}

#[test]
fn traffic_clip_matches_zune_jpeg() {
    clip_matches_reference("traffic.mjpeg", 640, 360);
}

#[test]
fn people_clip_matches_zune_jpeg() {
    clip_matches_reference("people.mjpeg", 800, 450);
}

/// Every frame of both clips decodes, with no heap allocation at all (corrupt frames and
/// wrong sizes included), and the time per frame is reported.
#[test]
fn clips_decode_without_allocating() {
    for (name, width, height, count) in [
        ("traffic.mjpeg", 640, 360, 480),
        ("people.mjpeg", 800, 450, 460),
    ] {
        let data = clip(name);
        let frames = mjpeg_frames(&data);
        assert_eq!(frames.len(), count, "{name}");
        let mut decoder = JpegDecoder::new(width, height);
        let mut nv12 = vec![0; decoder.nv12_len()];
        let mut small = JpegDecoder::new(320, 180);
        let mut small_nv12 = vec![0; small.nv12_len()];
        let mut results = vec![Ok(()); frames.len()];
        let mut elapsed = Default::default();
        let allocations = allocations_in(|| {
            let start = Instant::now();
            for (result, frame) in results.iter_mut().zip(&frames) {
                *result = decoder.decode(frame, &mut nv12);
            }
            elapsed = start.elapsed();
            for frame in frames.iter().step_by(50) {
                let cut = &frame[..frame.len() / 2];
                assert!(matches!(
                    decoder.decode(cut, &mut nv12),
                    Err(JpegError::Truncated { .. })
                ));
                assert!(matches!(
                    small.decode(frame, &mut small_nv12),
                    Err(JpegError::SizeMismatch { .. })
                ));
            }
        });
        for (i, result) in results.iter().enumerate() {
            assert_eq!(*result, Ok(()), "{name} frame {i}");
        }
        assert_eq!(allocations, 0, "{name}: heap allocations while decoding");
        eprintln!(
            "{name}: {count} frames {width}x{height} in {:.1} ms, {:.3} ms per frame",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e3 / count as f64
        );
    }
}

#[test]
fn frames_of_another_size_are_rejected() {
    let data = clip("traffic.mjpeg");
    let frame = mjpeg_frames(&data)[0];
    assert_eq!(jpeg::frame_size(frame), Ok((640, 360)));
    assert_eq!(
        decode(frame, 320, 180),
        Err(JpegError::SizeMismatch {
            expected_width: 320,
            expected_height: 180,
            width: 640,
            height: 360
        })
    );

    // 512x355 cannot be NV12; the nearest even size is rejected too.
    let path = util::frames_dir().join("face.jpg");
    let face = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(jpeg::frame_size(&face), Ok((512, 355)));
    assert_eq!(
        decode(&face, 512, 356),
        Err(JpegError::SizeMismatch {
            expected_width: 512,
            expected_height: 356,
            width: 512,
            height: 355
        })
    );
    assert!(JpegDecoder::try_new(512, 355).is_err());
}

/// A deterministic test picture: gradients, a disc and noise.
fn test_picture(width: u32, height: u32) -> Vec<u8> {
    let mut seed = 99u32;
    let mut out = Vec::new();
    for y in 0..height {
        for x in 0..width {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let noise = (seed >> 16) as i32 % 25 - 12;
            let (fx, fy) = (x as f32, y as f32);
            let disc = (fx - width as f32 / 2.0).hypot(fy - height as f32 / 2.0) < 9.0;
            let rgb = if disc {
                [240, 40, 30]
            } else {
                [
                    (127.0 + 110.0 * (fx * 0.21 + fy * 0.07).sin()) as i32 + noise,
                    (127.0 + 110.0 * (fy * 0.17 - fx * 0.05).cos()) as i32,
                    ((x * 5 + y * 3) % 256) as i32,
                ]
            };
            out.extend(rgb.map(|c| c.clamp(0, 255) as u8));
        }
    }
    out
}

fn encode_with_image(pixels: &[u8], width: u32, height: u32, color: ExtendedColorType) -> Vec<u8> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 90)
        .encode(pixels, width, height, color)
        .unwrap();
    out
}

/// The `image` crate's encoder writes 4:4:4 or grayscale frames; sizes that are not MCU
/// multiples check the cropping.
#[test]
fn image_crate_jpegs_match_zune_jpeg() {
    for (width, height) in [(64, 48), (66, 50), (8, 8), (2, 2), (130, 98)] {
        let rgb = test_picture(width, height);
        let color = encode_with_image(&rgb, width, height, ExtendedColorType::Rgb8);
        assert_matches_reference(&format!("{width}x{height} color"), &color, S444);
        let gray: Vec<u8> = rgb.chunks(3).map(|p| p[1]).collect();
        let gray_jpeg = encode_with_image(&gray, width, height, ExtendedColorType::L8);
        assert_matches_reference(&format!("{width}x{height} gray"), &gray_jpeg, S444);
        let nv12 = decode(&gray_jpeg, width, height).unwrap();
        assert!(nv12[(width * height) as usize..].iter().all(|&c| c == 128));
    }
}

#[test]
fn cjpeg_jpegs_match_zune_jpeg() {
    let fixtures = [
        ("4:2:2, restart every MCU", S422_RESTART_EACH_MCU, S422, 8),
        ("4:4:0, restart every row", S440_RESTART_EACH_ROW, S440, 1),
        ("4:2:0, restart every 2 MCUs", S420_RESTART_2_MCUS, S420, 2),
        ("4:4:4, optimized tables", S444_OPTIMIZED_TABLES, S444, 0),
        (
            "grayscale, restart every block",
            GRAY_RESTART_EACH_BLOCK,
            S444,
            14,
        ),
        ("16-bit DQT, SOF1", S420_16BIT_DQT_SOF1, S420, 0),
    ];
    for (label, hex, sub, restarts) in fixtures {
        let data = unhex(hex);
        assert_eq!(count_restart_markers(&data), restarts, "{label}");
        let d = assert_matches_reference(label, &data, sub);
        eprintln!("{label}: {d:?}");
    }
    let sof1 = unhex(S420_16BIT_DQT_SOF1);
    assert!(header_segments(&sof1).iter().any(|s| s.0 == 0xC1));
}

/// Without DHT segments a frame must decode with the Annex K tables exactly as with them.
#[test]
fn frames_without_huffman_tables_use_annex_k() {
    // A traffic frame re-encoded by the `image` crate (which writes the Annex K tables), and
    // a 4:2:2 frame with restart markers like a USB webcam's.
    let data = clip("traffic.mjpeg");
    let traffic = mjpeg_frames(&data)[100];
    let rgb = zune_jpeg::JpegDecoder::new(ZCursor::new(traffic))
        .decode()
        .unwrap();
    let reencoded = encode_with_image(&rgb, 640, 360, ExtendedColorType::Rgb8);
    let webcam_like = unhex(S422_RESTART_EACH_MCU);
    for (label, frame, width, height) in [
        ("re-encoded traffic", &reencoded[..], 640, 360),
        ("4:2:2 cjpeg", &webcam_like[..], 38, 22),
    ] {
        assert!(has_annex_k_tables(frame), "{label}: tables are not Annex K");
        let stripped = without_dht(frame);
        assert!(header_segments(&stripped).iter().all(|s| s.0 != 0xC4));
        assert_eq!(
            decode(&stripped, width, height),
            decode(frame, width, height),
            "{label}"
        );
    }

    // ffmpeg's MJPEG encoder writes optimized tables: stripping them breaks the frame (so
    // the check above can fail).
    assert!(!has_annex_k_tables(traffic));
    let stripped = decode(&without_dht(traffic), 640, 360);
    assert_ne!(stripped, decode(traffic, 640, 360));
}

/// Frames for the robustness property: real ones and ones with restart markers.
fn robustness_frames() -> &'static [(Vec<u8>, u32, u32)] {
    static FRAMES: std::sync::OnceLock<Vec<(Vec<u8>, u32, u32)>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        let traffic = clip("traffic.mjpeg");
        let people = clip("people.mjpeg");
        vec![
            (mjpeg_frames(&traffic)[7].to_vec(), 640, 360),
            (mjpeg_frames(&people)[300].to_vec(), 800, 450),
            (unhex(S422_RESTART_EACH_MCU), 38, 22),
            (unhex(GRAY_RESTART_EACH_BLOCK), 38, 22),
            (without_dht(&unhex(S420_RESTART_2_MCUS)), 38, 22),
        ]
    })
}

proptest! {
    // No regression files: a failure prints its inputs.
    #![proptest_config(ProptestConfig {
        cases: 400,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Truncated and bit-flipped frames give Ok or an error, never a panic.
    #[test]
    fn corrupt_frames_never_panic(
        which in 0usize..5,
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 0..12),
        keep in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let (frame, width, height) = &robustness_frames()[which];
        let mut data = frame.clone();
        for (at, bit) in flips {
            let i = at.index(data.len());
            data[i] ^= 1 << bit;
        }
        if let Some(keep) = keep {
            data.truncate(keep.index(data.len()));
        }
        let mut decoder = JpegDecoder::new(*width, *height);
        let mut nv12 = vec![0; decoder.nv12_len()];
        let _ = decoder.decode(&data, &mut nv12);
        // The decoder is still good for the next, intact frame.
        prop_assert_eq!(decoder.decode(frame, &mut nv12), Ok(()));
    }
}
