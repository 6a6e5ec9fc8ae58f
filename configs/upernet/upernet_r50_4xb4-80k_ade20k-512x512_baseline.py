# Full-data baseline: mmseg's stock UPerNet-R50, 80k iterations on ADE20K.
_base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'
