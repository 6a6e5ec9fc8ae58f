# Full-data baseline: mmseg's stock PSPNet-R50-D8, 80k iterations on ADE20K.
_base_ = 'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py'
