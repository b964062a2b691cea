"""Task metrics: VQA exact match, WER, PSNR/SSIM, FID with a scene-trained feature network, the scene checker."""
