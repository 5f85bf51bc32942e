//! The fundsp plumbing shared by carillon's own voice nodes (the célesta's bell, the
//! violin's strings, the sampler's reader): each renders a whole block of mono samples
//! in one loop, from no input, with a `fn render(&mut self, out: &mut [f32])` of its
//! own. [`mono_block_node!`] writes the rest of fundsp's `AudioNode` for it — one
//! output, no input, a sample (`tick`) or a block (`process`) both through `render` —
//! so that each node's file holds only what makes it that instrument.

/// `impl AudioNode for $node` with `ID = $id`, the items given in braces (`reset`,
/// `set_sample_rate`, …), and `tick` and `process` calling `$node::render`.
macro_rules! mono_block_node {
    ($node:ty, $id:expr, { $($items:tt)* }) => {
        impl fundsp::prelude::AudioNode for $node {
            const ID: u64 = $id;
            type Inputs = fundsp::prelude::U0;
            type Outputs = fundsp::prelude::U1;

            $($items)*

            fn tick(
                &mut self,
                _input: &fundsp::prelude::Frame<f32, fundsp::prelude::U0>,
            ) -> fundsp::prelude::Frame<f32, fundsp::prelude::U1> {
                let mut out = [0.0f32; 1];
                self.render(&mut out);
                [out[0]].into()
            }

            fn process(
                &mut self,
                size: usize,
                _input: &fundsp::prelude::BufferRef,
                output: &mut fundsp::prelude::BufferMut,
            ) {
                self.render(&mut output.channel_f32_mut(0)[..size]);
            }
        }
    };
}

pub(crate) use mono_block_node;

/// `frames` (a multiple of 64) of a voice, rendered in 64-frame blocks as the engine
/// does: for the nodes' own tests.
#[cfg(test)]
pub(crate) fn render_blocks(unit: &mut dyn fundsp::prelude::AudioUnit, frames: usize) -> Vec<f32> {
    use fundsp::prelude::{BufferArray, BufferRef, U1};
    let mut out = vec![0.0; frames];
    let mut buffer = BufferArray::<U1>::new();
    for block in out.chunks_mut(64) {
        unit.process(64, &BufferRef::empty(), &mut buffer.buffer_mut());
        block.copy_from_slice(&buffer.channel_f32(0)[..64]);
    }
    out
}
