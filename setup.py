from setuptools import find_packages, setup

setup(
    name='mmib',
    version='0.1.0',
    description='InfoBatch data pruning for iteration-based mmsegmentation training',
    packages=find_packages(include=['mmib', 'mmib.*']),
    python_requires='>=3.8',
    # mmcv must be the full build with ops (mmseg imports mmcv.ops); it is
    # installed from source by `make install`, see README.
    install_requires=[
        'torch>=2.0',
        'mmengine==0.10.7',
        'mmsegmentation==1.2.2',
        'numpy',
        'ftfy',
        'regex',
    ],
)
